"""Byte vocabulary: exactly the 256 byte values, all legal input; no special tokens.

Corpora join documents with DOCUMENT_SEPARATOR (NUL, which text and source code never contain),
so the model learns that byte as end-of-text and what follows it as a beginning of text: an empty
prompt is decoded from the state after one separator, and generation stops on it by default.
"""
VOCAB_SIZE = 256
DOCUMENT_SEPARATOR = 0x00

