"""The prefix structure of a prompt, as the simulated radix cache sees it.

SGLang's radix cache matches a new prompt token by token against every prompt it
still holds. The simulator approximates the tree with fixed-size token blocks: a
prompt is the chain of its blocks, each named by a hash of itself and everything
before it, so two prompts share their first ``n`` blocks exactly when their first
``n * BLOCK`` tokens are equal. Matching is therefore exact to within one block
(< ``BLOCK`` tokens per request), whatever the prompts look like: one system
prompt for all users, a few long documents with many questions, or nothing shared.

Blocks come from token ids (the real-time server tokenises what it is sent) or,
on the virtual clock where prompts are only lengths, from a named shared prefix
(genai-bench's ``--prefix-len``: one text for every request).

    >>> a = token_blocks(list(range(50)))
    >>> b = token_blocks(list(range(35)) + [7] * 15)
    >>> [size for _, size in a], a[:2] == b[:2], a[2] == b[2]
    ([16, 16, 16], True, False)
    >>> [size for _, size in named_blocks("system", 40)]
    [16, 16, 8]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Tokens per block. Small enough that a miss costs little (< 16 tokens of a
# prompt), large enough that hashing a 4k-token prompt is ~250 tuple hashes.
BLOCK = 16

Block = tuple[object, int]  # (chain key, tokens in the block)


def token_blocks(ids: Sequence[int], block: int = BLOCK) -> tuple[Block, ...]:
    """The full blocks of a tokenised prompt, each keyed by the chain up to it.

    The tail shorter than a block is left out: it is never shared in the model.
    """
    out: list[Block] = []
    key: object = None
    for start in range(0, len(ids) - block + 1, block):
        key = hash((key, tuple(ids[start : start + block])))
        out.append((key, block))
    return tuple(out)


def named_blocks(name: str, length: int, block: int = BLOCK) -> tuple[Block, ...]:
    """``length`` tokens of a prefix named ``name`` (the same name: the same text)."""
    if length <= 0:
        return ()
    full, tail = divmod(int(length), block)
    out: list[Block] = [((name, i), block) for i in range(full)]
    if tail:
        out.append(((name, "tail", length), tail))
    return tuple(out)


def request_blocks(req: Any, input_len: int) -> tuple[Block, ...]:
    """A ``SimRequest``'s blocks within its prompt: its own, or its named shared prefix."""
    blocks = tuple(req.blocks or ())
    if not blocks and req.prefix_key is not None and req.prefix_len > 0:
        blocks = named_blocks(str(req.prefix_key), min(int(req.prefix_len), input_len - 1))
    end = n = 0
    while n < len(blocks) and end + blocks[n][1] <= input_len:
        end += blocks[n][1]
        n += 1
    return blocks[:n]


class BlockCache:
    """The radix cache's memory: cached blocks in LRU order, with lock counts.

    A running request locks the blocks of its prompt that are in the cache; an
    unlocked block is evictable (its memory counts as free for admission, as in
    SGLang's ``available_and_evictable``). Eviction drops least-recently-used
    unlocked blocks; a path is touched leaf first, so a prompt's deeper blocks go
    before the prefix it shares with others.

        >>> c = BlockCache()
        >>> c.insert(named_blocks("sys", 40))
        40
        >>> c.match(named_blocks("sys", 40)), c.match(named_blocks("sys", 100))
        ((40, 3), (32, 2))
        >>> c.total, c.locked
        (40, 0)
    """

    def __init__(self) -> None:
        self._size: dict[object, int] = {}
        self._lru: dict[object, None] = {}  # insertion order = LRU order
        self._refs: dict[object, int] = {}
        self.total = 0
        self.locked = 0

    def __len__(self) -> int:
        return len(self._size)

    def match(self, blocks: Sequence[Block]) -> tuple[int, int]:
        """(tokens, blocks) of the longest cached leading run of ``blocks``."""
        tokens = n = 0
        for key, size in blocks:
            if key not in self._size:
                break
            tokens += size
            n += 1
        return tokens, n

    def lock_cost(self, blocks: Sequence[Block]) -> int:
        """Evictable tokens that locking ``blocks`` (all cached) would pin."""
        return sum(size for key, size in blocks if not self._refs.get(key))

    def lock(self, blocks: Sequence[Block]) -> None:
        for key, size in blocks:
            n = self._refs.get(key, 0)
            if n == 0:
                self.locked += size
            self._refs[key] = n + 1
        self._touch(blocks)

    def unlock(self, blocks: Sequence[Block]) -> None:
        for key, size in blocks:
            n = self._refs.get(key, 0) - 1
            if n <= 0:
                self._refs.pop(key, None)
                self.locked -= size
            else:
                self._refs[key] = n
        self._touch(blocks)

    def insert(self, blocks: Sequence[Block]) -> int:
        """Add the blocks not cached yet; return the tokens added."""
        added = 0
        for key, size in blocks:
            if key not in self._size:
                self._size[key] = size
                self._lru[key] = None
                added += size
        self.total += added
        return added

    def evict(self, tokens: int) -> None:
        """Drop least-recently-used unlocked blocks until ``tokens`` are freed (or none is left)."""
        if tokens <= 0:
            return
        for key in list(self._lru):
            if tokens <= 0:
                break
            if not self._refs.get(key):
                size = self._size.pop(key)
                del self._lru[key]
                self.total -= size
                tokens -= size

    def _touch(self, blocks: Sequence[Block]) -> None:
        for key, _ in reversed(blocks):
            if key in self._lru:
                del self._lru[key]
                self._lru[key] = None
