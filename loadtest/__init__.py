"""The load testers' socket script: virtual players driving the server over websockets.

`thisthat loadtest ...` or `python -m loadtest ...`; see docs/load-testing.md.
"""
