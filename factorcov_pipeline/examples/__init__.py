"""Real-data examples: converters from public sample data to the user dataset format.

See docs/user-data.md. Each converter documents what the source lacks and how the gap is
filled (proxies, zero exposures), so that results are read with the right caveats.
"""
