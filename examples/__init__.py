"""Ports of NanoSSL C examples; installed as pynano.examples."""
