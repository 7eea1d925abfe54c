"""Pure decisions: frozen dataclasses in, decisions out; no I/O, no asyncio, no clock reads."""
