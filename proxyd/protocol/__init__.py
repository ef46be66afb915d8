"""Sans-I/O protocol machines of proxyd's handshakes.

Each machine takes the bytes a peer sent (``receive_data``) and hands back
events, and queues the bytes to answer for ``data_to_send()``.  None of them
touches a socket, a clock or a thread: the worker's event loop owns I/O and
time-outs, so every handshake can be tested byte for byte and fuzzed.

A machine raises a ``proxyd.protocol.errors.ProtocolError`` subclass on input
it cannot accept; its ``reason`` is a short code for metrics and logs.  Input
that is merely incomplete is buffered (up to a bound) until more arrives.
When a handshake is over, the bytes that arrived after it are handed back so
the relay can carry on byte-transparently.
"""
