"""Security and reliability of the satellites' computers.

telecommand.py  ground -> satellite commands as CCSDS space packets protected in the
                manner of CCSDS Space Data Link Security (355.0-B-2): AES-GCM,
                key ids, 64-bit sequence numbers, an anti-replay window, rotation
"""
