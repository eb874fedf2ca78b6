"""Totem: the single-ring protocol (SRP), membership, totempg and the simulator.

Everything here is sans-IO (DESIGN.md): datagrams and ``now`` go in; datagrams to send, the
next timer deadline and typed events come out.
"""
