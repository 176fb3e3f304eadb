"""Pure pieces shared by both halves: event ABI, wire protocol, config model.

Nothing here opens sockets, reads clocks or keeps globals.
"""
