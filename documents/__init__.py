"""Registered documents: the registry of their chunk keys, the chunks' token ids, and the
library that resolves a request's documents (inline text or ids) into chunked documents."""
