"""Polymarket mirrored on exactly one node: the feed lease, the REST polls, the market-channel stream and replay."""
