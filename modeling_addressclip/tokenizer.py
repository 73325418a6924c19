"""Build a CLIP-style tokenizer and processor offline, from the texts a dataset actually contains.

Pretrained CLIP ships its own BPE; a model trained from scratch (the demo, the tests) needs one
that can be built without the Hub. We learn byte-level BPE merges on text normalized and
pre-tokenized exactly as ``CLIPTokenizer`` does, then wrap them as a real ``CLIPTokenizer`` so it
saves, loads and behaves like OpenAI's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import pre_tokenizers
from transformers import CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer

BOS, EOS, END_OF_WORD = "<|startoftext|>", "<|endoftext|>", "</w>"


def _words(corpus: Iterable[str], backend) -> Counter[tuple[str, ...]]:
    """Count CLIP pre-tokenized words as symbol tuples whose last symbol carries ``</w>``."""
    words: Counter[tuple[str, ...]] = Counter()
    for text in corpus:
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
            words[(*piece[:-1], piece[-1] + END_OF_WORD)] += 1
    return words


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def learn_bpe_merges(words: Counter[tuple[str, ...]], num_merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first, ties broken by the pair's text: deterministic.

    (``tokenizers``' BpeTrainer breaks ties by hash order, so two processes get different vocabularies.)
    """
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda item: (-item[1], item[0]))[0]
        merges.append(best)
        words = Counter({_merge(word, best): count for word, count in words.items()})
    return merges


def build_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 2048, model_max_length: int = 77) -> CLIPTokenizer:
    """Train a byte-level BPE CLIP tokenizer on ``corpus`` (address and caption texts), deterministically.

    The vocabulary is CLIP's layout: specials ``<|startoftext|>`` (id 0) and ``<|endoftext|>`` (id 1, also
    padding, so the text encoder pools at the first end-of-text), the 256 byte symbols, the same with
    ``</w>``, then the learned merges; any text is encodable without an unknown token.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    base = [BOS, EOS, *alphabet, *(ch + END_OF_WORD for ch in alphabet)]
    if vocab_size < len(base) + 1:
        raise ValueError(f"vocab_size must exceed the {len(base)} base symbols, got {vocab_size}")
    merges = learn_bpe_merges(_words(corpus, CLIPTokenizer().backend_tokenizer), vocab_size - len(base))
    vocab = {token: i for i, token in enumerate(base)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_clip_processor(
    corpus: Iterable[str], image_size: int = 224, vocab_size: int = 2048, model_max_length: int = 77
) -> CLIPProcessor:
    """A ``CLIPProcessor``: the offline tokenizer above plus PIL image processing at ``image_size``."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    tokenizer = build_clip_tokenizer(corpus, vocab_size=vocab_size, model_max_length=model_max_length)
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def sync_text_config_with_tokenizer(config, tokenizer) -> None:
    """Set the text config's vocab size and bos/eos/pad ids from ``tokenizer`` (CLIP pools at ``eos_token_id``)."""
    text_config = config.text_config
    if text_config.vocab_size < len(tokenizer):
        text_config.vocab_size = len(tokenizer)
    text_config.bos_token_id = tokenizer.bos_token_id
    text_config.eos_token_id = tokenizer.eos_token_id
    text_config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.model_max_length > text_config.max_position_embeddings:
        tokenizer.model_max_length = text_config.max_position_embeddings


__all__ = ["build_clip_processor", "build_clip_tokenizer", "sync_text_config_with_tokenizer"]
