"""Physical constants, each with its source. Distances in km, times in s."""

from __future__ import annotations

# WGS-72: the constants SGP4 is defined with (Vallado et al. 2006, "Revisiting Spacetrack
# Report #3", AIAA 2006-6753); used wherever a number must agree with the SGP4 theory.
MU_WGS72_KM3_S2 = 398600.8
RADIUS_WGS72_KM = 6378.135
J2_WGS72 = 0.001082616

# WGS-84 ellipsoid (NIMA TR8350.2): station coordinates and geodetic conversions.
RADIUS_EARTH_KM = 6378.137
FLATTENING_WGS84 = 1.0 / 298.257223563
ECC2_WGS84 = FLATTENING_WGS84 * (2.0 - FLATTENING_WGS84)

# Earth rotation rate including precession (IERS Conventions 2010, ch. 1), rad/s.
EARTH_ROTATION_RAD_S = 7.292115146706979e-5

SPEED_OF_LIGHT_KM_S = 299_792.458  # exact (SI)
AU_KM = 149_597_870.7  # IAU 2012 Resolution B2
RADIUS_SUN_KM = 695_700.0  # IAU 2015 Resolution B3 nominal solar radius
SOLAR_CONSTANT_W_M2 = 1361.0  # Kopp & Lean 2011 (TSI at 1 AU)

# Tropical year (Astronomical Almanac), days: the RAAN rate of a sun-synchronous orbit.
TROPICAL_YEAR_DAYS = 365.242190
SECONDS_PER_DAY = 86_400.0
