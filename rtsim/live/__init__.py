"""The live asyncio server, its backplanes, a Python client and a load generator."""
