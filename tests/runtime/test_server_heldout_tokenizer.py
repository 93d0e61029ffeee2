"""Tokenizing leaves other threads running (issue #17: a 12 MiB prompt stalled health and every
stream for 6-7 s). The server tokenizes in a worker thread; that only helps if the tokenizer
releases the GIL meanwhile, which `tokenizers`' `encode` does not and `encode_batch` does. Measured
here on the real tokenizer: while a long text is tokenized in one thread, another thread that
wakes every millisecond is never held up for more than a fraction of the tokenization."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from berth_runtime.tokenizer import Tokenizer


def test_encoding_a_long_text_never_holds_up_other_threads(tiny_llama_dir: Path) -> None:
    tokenizer = Tokenizer(tiny_llama_dir)
    text = "The quick brown fox jumps over the lazy dog. " * 40_000  # 1.8 MB
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    started = time.perf_counter()
    ids = tokenizer.encode(text)
    took = time.perf_counter() - started
    done.set()
    ticker.join()
    assert ids[:1] == tokenizer.encode("The")[:1] and len(ids) > 100_000
    assert max(gaps) < took / 4, f"another thread waited {max(gaps):.3f} s of a {took:.3f} s encode"
