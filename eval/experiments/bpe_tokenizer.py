"""The byte-level BPE tokenizer of the tokenizer baseline (tokenizer_baseline.py): sentencepiece over
bytes mapped 1:1 to U+0000..U+00FF, identity normalisation, newline as a user-defined piece, byte
fallback; lossless on any bytes."""
from __future__ import annotations

import numpy as np

from scratchpad.errors import UserError

NEWLINE = "\n"


def to_text(b: bytes) -> str:
    return bytes(b).decode("latin-1")


def spread_chunks(arr: np.ndarray, n_bytes: int, chunks: int = 16) -> bytes:
    """n_bytes of arr as `chunks` pieces from evenly spaced offsets (covers a mixed corpus)."""
    if len(arr) <= n_bytes:
        return bytes(arr)
    size = n_bytes // chunks
    offs = np.linspace(0, len(arr) - size, chunks).astype(np.int64)
    return b"".join(bytes(arr[o : o + size]) for o in offs)


class Tokenizer:
    def __init__(self, proto: bytes):
        import sentencepiece as spm

        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.vocab_size = self.sp.get_piece_size()

    @classmethod
    def train(cls, sample: bytes, vocab_size: int) -> "Tokenizer":
        import io

        import sentencepiece as spm

        lines = [ln for ln in to_text(sample).split(NEWLINE) if ln]
        if not lines:
            raise UserError("tokenizer baseline: the training sample holds no text")
        need = len(set("".join(lines))) + 256 + 2  # every seen character, the 256 byte pieces, unk and newline
        if vocab_size < need:
            raise UserError(f"tokenizer baseline: --vocab-size {vocab_size} is too small for this sample: "
                            f"{need - 258} distinct byte values + 256 byte-fallback pieces + 2 need at least {need}")
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
                character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, user_defined_symbols=[NEWLINE],
                bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1, num_threads=1, minloglevel=2, max_sentence_length=1 << 16,
                max_sentencepiece_length=16, hard_vocab_limit=False)
        except RuntimeError as e:
            raise UserError(f"tokenizer baseline: sentencepiece could not train a {vocab_size}-piece BPE "
                            f"({str(e).splitlines()[0][:160]}); try another --vocab-size") from None
        return cls(buf.getvalue())

    def encode(self, b: bytes) -> np.ndarray:
        """Bytes -> token ids, encoded in newline-aligned chunks (merges never cross a newline)."""
        text = to_text(b)
        out, step, i = [], 1 << 20, 0
        while i < len(text):
            j = text.find(NEWLINE, i + step)
            j = len(text) if j < 0 else j + 1
            out.append(np.asarray(self.sp.encode(text[i:j]), dtype=np.int32))
            i = j
        return np.concatenate(out) if out else np.zeros(0, np.int32)

    def decode(self, ids) -> bytes:
        return self.sp.decode([int(i) for i in ids]).encode("latin-1")
