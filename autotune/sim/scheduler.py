"""A step-by-step model of SGLang's scheduler (0.5.x ``Scheduler`` + ``PrefillAdder``).

Each ``step(now)`` does what one iteration of SGLang's event loop does: merge the
last prefill batch into the running batch, try to form a new prefill batch (prefill
has priority), otherwise run one decode step of the running batch. Modelled:

- a KV pool of ``max_total_num_tokens`` tokens; admission reserves each new
  request's prompt plus its full ``max_new_tokens`` and each running request's
  remaining tokens times ``new_token_ratio`` (0.7 at start, decaying to ~0.1 over
  600 decode steps, reset when idle); retraction of the newest requests when a
  decode step would not fit, after which the ratio is re-estimated;
- ``max-running-requests``, ``chunked-prefill-size`` (one chunked request at a
  time), ``max-prefill-tokens``, ``enable-mixed-chunk``;
- the radix cache at block granularity (``autotune.sim.prefix``): a prompt's
  blocks already cached are not prefilled again, a prefilled prompt is inserted,
  running requests lock their blocks, unlocked ones are evicted LRU when the pool
  is full (cache memory competes with the KV pool); ``--disable-radix-cache``
  turns it off;
- waiting-queue order by ``schedule-policy``: lpm sorts by the longest cached
  prefix and falls back to fcfs above 128 waiting requests or without the radix
  cache (SGLang's ``SchedulePolicy``);
- CUDA-graph padding of decode batches up to ``cuda-graph-max-bs``, eager above.

Running requests advance in lock-step, so their token counts are kept implicitly
(``tokens = base + decode_counter - join``) and a decode step costs O(finishes),
not O(batch): ``step`` stays far under a millisecond at batch 256.

    >>> from autotune.sim.settings import build_engine
    >>> from autotune.sim.types import SimRequest
    >>> eng = build_engine({}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> eng.add(SimRequest(rid="a", input_len=128, output_len=4))
    >>> now = 0.0
    >>> while eng.has_work():
    ...     out = eng.step(now)
    ...     now += out.duration_s
    >>> [e.kind for e in out.events]
    ['finished']
"""

from __future__ import annotations

import heapq
import random
from typing import Any

from autotune.sim.calibration import (
    STOCK,
    Calibration,
)
from autotune.sim.perf import StepPerf
from autotune.sim.prefix import BlockCache, request_blocks
from autotune.sim.settings import SimSettings
from autotune.sim.types import EngineStats, SimRequest, SimStartupError, StepOutcome, TokenEvent

# SGLang global_config / envs defaults (0.5.x).
NEW_TOKEN_RATIO_DECAY_STEPS = 600
RETRACT_DECODE_STEPS = 20
CLIP_MAX_NEW_TOKENS = 4096
IGNORE_EOS_RESERVE_TOKENS = 1
LPM_MAX_QUEUE = 128
# genai-bench streams one token per chunk; the server only needs coarse progress.
DEFAULT_TOKEN_EVENT_INTERVAL = 32


class _Req:
    """Scheduler-side state of one request."""

    __slots__ = (
        "rid",
        "input_len",
        "output_len",
        "arrival",
        "blocks",
        "seq",
        "gen",
        "done",
        "owned",
        "join",
        "cached",
        "first_token_at",
        "held",
        "extend",
        "started",
        "fill",
    )

    def __init__(self, r: SimRequest, seq: int) -> None:
        self.rid = r.rid
        self.input_len = int(r.input_len)
        self.output_len = max(1, int(r.output_len))
        self.arrival = float(r.arrival)
        self.blocks = request_blocks(r, self.input_len)
        self.seq = seq
        self.gen = 0  # output tokens so far (while running: at join time)
        self.done = 0  # tokens of the sequence already in the KV cache (prefill progress)
        self.owned = (
            0  # KV tokens this request owns, shared prefix excluded (at join time if running)
        )
        self.join = 0  # decode counter when it joined the running batch
        self.cached = 0  # prompt tokens served from the prefix cache
        self.first_token_at: float | None = None
        self.held = 0  # leading blocks it keeps locked in the cache
        self.extend = 0  # tokens prefilled in the current batch
        self.started = False  # admitted at least once (its first token may still be pending)
        self.fill = self.input_len  # tokens that must be in KV before the next token is sampled


class _PrefillBudget:
    """What a prefill batch may still take: ``PrefillAdder``'s remaining budgets.

    ``avail`` is the free plus evictable KV pool; ``rem_total_offset`` the tokens
    promised to running and admitted requests (their future output included),
    ``cur_offset`` those they occupy now; ``rem_input`` is what is left of
    ``max-prefill-tokens`` and ``rem_chunk`` of ``chunked-prefill-size`` (None: off).
    """

    __slots__ = ("avail", "rem_total_offset", "cur_offset", "rem_input", "rem_chunk", "req_states")

    def __init__(
        self,
        *,
        avail: int,
        rem_total_offset: float,
        cur_offset: int,
        rem_input: int,
        rem_chunk: int | None,
    ) -> None:
        self.avail = avail
        self.rem_total_offset = rem_total_offset
        self.cur_offset = cur_offset
        self.rem_input = rem_input
        self.rem_chunk = rem_chunk
        # PrefillAdder.req_states: the ignore_eos simulation, built on first use.
        self.req_states: list[tuple[float, int]] | None = None

    def room(self) -> int:
        """Tokens a chunked request may prefill now (chunk and memory budget)."""
        chunk = self.rem_chunk if self.rem_chunk is not None else 1 << 62
        return min(chunk, int(self.avail - self.rem_total_offset))

    def out_of_memory(self) -> bool:
        return self.avail - self.rem_total_offset <= 0 or self.avail - self.cur_offset <= 0

    def out_of_tokens(self) -> bool:
        return self.rem_input <= 0 or (self.rem_chunk is not None and self.rem_chunk <= 0)

    def cannot_reserve(self, tokens: int, lock_cost: int = 0) -> bool:
        """Would ``tokens`` (prompt + reserved output) overrun the memory budget?"""
        return tokens >= self.avail - lock_cost - self.rem_total_offset

    def take(self, n: int, reserve: int) -> None:
        """Prefill ``n`` tokens now and reserve ``reserve`` more for the request's output."""
        self.rem_total_offset += n + reserve
        self.cur_offset += n
        self.rem_input -= n
        if self.rem_chunk is not None:
            self.rem_chunk -= n


class SimEngine:
    """The simulated scheduler; see the module docstring and ``autotune.sim.types``."""

    def __init__(
        self,
        settings: SimSettings,
        perf: StepPerf,
        *,
        seed: int = 0,
        noise: Any = None,
        calibration: Calibration | None = None,
    ) -> None:
        if settings.max_total_num_tokens <= 0:
            raise SimStartupError(
                "Not enough memory. Please try to increase --mem-fraction-static. "
                f"Current value: self.server_args.mem_fraction_static={settings.mem_fraction_static}"
            )
        self.settings = settings
        self.perf = perf
        self._rng = random.Random(seed)
        # Run-to-run noise on step times (autotune/sim/noise.py); None: exact.
        self.noise = noise or (lambda ms, steps=1: ms)
        self.token_event_interval = DEFAULT_TOKEN_EVENT_INTERVAL
        self.max_total = settings.max_total_num_tokens
        self.max_running = settings.max_running_requests
        self.chunk_size = (
            settings.chunked_prefill_size if settings.chunked_prefill_size > 0 else None
        )
        self.max_prefill = settings.max_prefill_tokens
        self.radix = not settings.disable_radix_cache
        policy = settings.schedule_policy
        if policy in ("lpm", "dfs-weight") and not self.radix:
            policy = "fcfs"  # SGLang falls back when there is no tree to match against
        self.policy = policy
        self.mixed = settings.enable_mixed_chunk
        graph_bs = [] if settings.disable_cuda_graph else list(settings.cuda_graph_bs)
        self._graph_pad = self._build_pad_table(graph_bs)
        cal = calibration or STOCK
        ratio = min(cal.init_new_token_ratio * settings.schedule_conservativeness, 1.0)
        self.init_ratio = ratio
        self.min_ratio = min(ratio * cal.min_new_token_ratio_factor, 1.0)
        self.ratio_decay = (ratio - self.min_ratio) / NEW_TOKEN_RATIO_DECAY_STEPS
        self.new_token_ratio = ratio

        self._seq = 0
        self.waiting: list[_Req] = []
        self.running: dict[str, _Req] = {}
        self.chunked: _Req | None = None
        self.batch_is_full = False
        self.counter = 0  # decode steps the running batch has taken
        # Aggregates over running requests, so that per-step cost is O(1):
        self._run_owned = 0  # sum(owned - join); owned tokens = _run_owned + n * counter
        self._run_ctx = 0  # sum(input + gen - join); context tokens = _run_ctx + n * counter
        self._run_gen = 0  # sum(gen - join); output tokens so far = _run_gen + n * counter
        self._run_rem = 0  # sum(min(output - gen, clip) + join); remaining = _run_rem - n * counter
        self._finish_heap: list[tuple[int, int, str]] = []
        self._buckets: dict[int, set[str]] = {}
        self._cache = BlockCache()
        self._pending: list[TokenEvent] = []
        # counters
        self.num_retracted_total = 0
        self.prompt_tokens_total = 0
        self.cached_tokens_total = 0
        self.generated_total = 0
        self._gen_window: list[tuple[float, int]] = []
        self._last_kind = "idle"

    # ------------------------------------------------------------------ public API
    @property
    def _max_req_len(self) -> int:
        return min(self.settings.context_len - 1, self.max_total - 1)

    def rejects(self, input_len: int, output_len: int) -> bool:
        """Would SGLang answer this request with a 400 before it runs ("Requested token
        count exceeds the model's maximum context length" / input longer than the KV
        pool)?"""
        too_long = input_len + output_len >= self.settings.context_len
        return too_long or input_len > self._max_req_len - 5

    def add(self, req: SimRequest) -> None:
        """Queue a request (it arrived at ``req.arrival``); oversize requests are aborted."""
        r = _Req(req, self._seq)
        self._seq += 1
        if self.rejects(r.input_len, r.output_len):
            self._pending.append(TokenEvent(req.rid, "aborted", 0, req.arrival))
            return
        # The scheduler clips max_new_tokens so that one request always fits the pool.
        r.output_len = max(1, min(r.output_len, self._max_req_len - r.input_len - 1))
        self.prompt_tokens_total += r.input_len
        self.waiting.append(r)

    def abort(self, rid: str) -> None:
        """Drop a request wherever it is, freeing its KV cache."""
        for i, r in enumerate(self.waiting):
            if r.rid == rid:
                del self.waiting[i]
                self._release_key(r)
                self._pending.append(TokenEvent(rid, "aborted", r.gen, r.arrival))
                return
        if self.chunked is not None and self.chunked.rid == rid:
            r = self.chunked
            self.chunked = None
            self._release_key(r)
            self._pending.append(TokenEvent(rid, "aborted", r.gen, r.arrival))
            return
        r = self.running.get(rid)
        if r is not None:
            gen = r.gen + self.counter - r.join
            self._leave_running(r)
            self._release_key(r)
            self.batch_is_full = False
            self._pending.append(TokenEvent(rid, "aborted", gen, r.arrival))

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.chunked is not None or self._pending)

    def step(self, now: float, max_decode_steps: int = 1) -> StepOutcome:
        """Plan and cost one forward batch; events happen at ``now + duration_s``.

        ``max_decode_steps`` > 1 lets the virtual clock fuse consecutive decode steps
        while nothing else can happen (no queue, no finish, no memory pressure).
        """
        events = self._pending
        self._pending = []
        for ev in events:
            ev.time = now
        batch = self._new_prefill_batch()
        if batch:
            return self._run_extend(batch, now, events)
        if self.running:
            return self._run_decode(now, events, max_decode_steps)
        if self.waiting and self.chunked is None and self.batch_is_full:
            # Nothing runs and the head of the queue can never be admitted (it needs
            # the whole pool): fail it rather than stall every request behind it.
            r = self.waiting.pop(0)
            self._release_key(r)
            self.batch_is_full = False
            events.append(TokenEvent(r.rid, "aborted", r.gen, now))
        self.new_token_ratio = self.init_ratio  # SGLang re-initialises when idle
        self._last_kind = "idle"
        return StepOutcome(duration_s=0.0, events=events, kind="idle")

    def stats(self) -> EngineStats:
        n = len(self.running)
        used = self._used_tokens()
        return EngineStats(
            num_running_reqs=n,
            num_queue_reqs=len(self.waiting) + (1 if self.chunked is not None else 0),
            num_used_tokens=used,
            token_usage=round(used / self.max_total, 4),
            max_total_num_tokens=self.max_total,
            num_retracted_reqs_total=self.num_retracted_total,
            cache_hit_rate=(
                self.cached_tokens_total / self.prompt_tokens_total
                if self.prompt_tokens_total
                else 0.0
            ),
            new_token_ratio=self.new_token_ratio,
            gen_throughput=self._gen_throughput(),
            is_cuda_graph=self._last_kind == "decode" and self._graph_pad_for(n) is not None,
        )

    def server_info(self) -> dict[str, Any]:
        info = self.settings.as_server_info()
        info["internal_states"] = [
            {
                "max_total_num_tokens": self.max_total,
                "max_running_requests": self.max_running,
                "new_token_ratio": self.new_token_ratio,
            }
        ]
        return info

    # ------------------------------------------------------------------ KV accounting
    def _running_owned(self) -> int:
        return self._run_owned + len(self.running) * self.counter

    @property
    def _cache_total(self) -> int:
        return self._cache.total

    def _used_tokens(self) -> int:
        """SGLang's ``num_used``: the pool minus free and evictable tokens, so a cached
        prefix counts only while a request holds it (``_get_token_info``)."""
        chunked = self.chunked.owned if self.chunked is not None else 0
        return self._running_owned() + chunked + self._cache.locked

    def _occupied_tokens(self) -> int:
        """What the pool holds, evictable cached prefixes included (eviction's measure)."""
        chunked = self.chunked.owned if self.chunked is not None else 0
        return self._running_owned() + chunked + self._cache.total

    def _avail_and_evictable(self) -> int:
        chunked = self.chunked.owned if self.chunked is not None else 0
        return self.max_total - self._running_owned() - chunked - self._cache.locked

    def _evict(self) -> None:
        """Drop least-recently-used unlocked blocks while the pool is over-full."""
        if self._cache.total:
            self._cache.evict(self._occupied_tokens() - self.max_total)

    def _match(self, r: _Req) -> int:
        """Prompt tokens of ``r`` in the cache (SGLang always recomputes the last one)."""
        if not self.radix or not r.blocks:
            return 0
        return min(self._cache.match(r.blocks)[0], r.input_len - 1)

    def _lock_matched(self, r: _Req) -> None:
        n = self._cache.match(r.blocks)[1]
        self._cache.lock(r.blocks[:n])
        r.held = n

    def _release_key(self, r: _Req) -> None:
        if r.held:
            self._cache.unlock(r.blocks[: r.held])
            r.held = 0

    def _maybe_insert_prefix(self, r: _Req) -> None:
        """Blocks ``r`` has prefilled go into the tree (``cache_unfinished_req``), locked by it.

        A block another request inserted meanwhile was computed twice; SGLang keeps
        the tree's copy and frees the request's.
        """
        if not self.radix or not r.blocks:
            return
        end = sum(size for _, size in r.blocks[: r.held])
        n = r.held
        while n < len(r.blocks) and end + r.blocks[n][1] <= r.done:
            end += r.blocks[n][1]
            n += 1
        if n == r.held:
            return
        new = r.blocks[r.held : n]
        self._cache.insert(new)
        r.owned -= sum(size for _, size in new)
        self._cache.lock(new)
        r.held = n

    # ------------------------------------------------------------------ running batch
    def _join_running(self, r: _Req) -> None:
        r.join = self.counter
        self.running[r.rid] = r
        self._run_owned += r.owned - r.join
        self._run_ctx += r.input_len + r.gen - r.join
        self._run_gen += r.gen - r.join
        self._run_rem += min(r.output_len - r.gen, CLIP_MAX_NEW_TOKENS) + r.join
        heapq.heappush(self._finish_heap, (r.join + r.output_len - r.gen, r.seq, r.rid))
        if self.token_event_interval > 0:
            self._buckets.setdefault(r.join % self.token_event_interval, set()).add(r.rid)

    def _leave_running(self, r: _Req) -> None:
        """Remove from the running batch, folding its implicit progress into its fields."""
        del self.running[r.rid]
        steps = self.counter - r.join
        self._run_owned -= r.owned - r.join
        self._run_ctx -= r.input_len + r.gen - r.join
        self._run_gen -= r.gen - r.join
        self._run_rem -= min(r.output_len - r.gen, CLIP_MAX_NEW_TOKENS) + r.join
        r.gen += steps
        r.owned += steps
        if self.token_event_interval > 0:
            bucket = self._buckets.get(r.join % self.token_event_interval)
            if bucket is not None:
                bucket.discard(r.rid)

    # ------------------------------------------------------------------ prefill
    def _ordered_waiting(self) -> list[_Req]:
        q = self.waiting
        if self.policy in ("lpm", "dfs-weight") and len(q) <= LPM_MAX_QUEUE:
            return sorted(q, key=lambda r: -self._match(r))
        if self.policy == "lof":
            return sorted(q, key=lambda r: -r.output_len)
        if self.policy == "random":
            q = list(q)
            self._rng.shuffle(q)
            return q
        return q

    def _new_prefill_batch(self) -> list[_Req]:
        """SGLang's ``get_new_batch_prefill`` + ``PrefillAdder``: the requests to extend."""
        if (self.batch_is_full or not self.waiting) and self.chunked is None:
            return []
        running_bs = len(self.running)
        if self.max_running - running_bs <= 0 and self.chunked is None:
            self.batch_is_full = True
            return []
        budget = self._prefill_budget(running_bs)
        batch: list[_Req] = []
        new_chunked: _Req | None = None
        continuing = self.chunked is not None
        if continuing:
            r = self.chunked
            truncated = self._continue_chunked(r, budget)
            if r.extend == 0:  # no room this round: keep it chunked, let decoding free memory
                return []
            batch.append(r)
            new_chunked = r if truncated else None
            self.chunked = None
        ordered: list[_Req] = []
        # A still-truncated chunked request has used up the chunk or the memory budget.
        if new_chunked is None:
            ordered = self._ordered_waiting()
            new_chunked = self._admit_waiting(ordered, batch, budget, running_bs)
        self._drop_admitted(ordered, batch, continuing)
        self.chunked = new_chunked
        return batch

    def _prefill_budget(self, running_bs: int) -> _PrefillBudget:
        """``PrefillAdder.__init__``: what the running batch leaves to a new prefill batch."""
        mixed_tokens = running_bs if self.mixed and running_bs else 0
        return _PrefillBudget(
            avail=self._avail_and_evictable(),
            rem_total_offset=(
                mixed_tokens + (self._run_rem - running_bs * self.counter) * self.new_token_ratio
            ),
            cur_offset=mixed_tokens,
            rem_input=self.max_prefill,
            rem_chunk=None if self.chunk_size is None else self.chunk_size - mixed_tokens,
        )

    def _continue_chunked(self, r: _Req, budget: _PrefillBudget) -> bool:
        """``PrefillAdder.add_chunked_req``: the chunked request's next chunk (``r.extend``).

        True if the rest of its prompt still does not fit: it stays chunked.
        """
        room = budget.room()
        want = r.fill - r.done
        truncated = want > room
        r.extend = max(0, min(want, room))
        reserve = 0 if truncated else min(r.output_len - r.gen, CLIP_MAX_NEW_TOKENS)
        budget.take(r.extend, reserve)
        return truncated

    def _admit_waiting(
        self, ordered: list[_Req], batch: list[_Req], budget: _PrefillBudget, running_bs: int
    ) -> _Req | None:
        """``PrefillAdder.add_one_req`` over the queue in policy order, appending to ``batch``
        until a stop rule fires; returns the request left chunked, if any."""
        for r in ordered:
            if self._batch_stop(batch, budget, running_bs):
                break
            hit = self._match(r)
            matched = max(hit, r.done)
            extend = r.fill - matched
            max_new = min(r.output_len - r.gen, CLIP_MAX_NEW_TOKENS)
            if self._request_stop(r, hit, extend, max_new, batch, budget):
                break
            chunked = self._take_waiting(r, matched, extend, max_new, budget)
            batch.append(r)
            if chunked:
                return r
        return None

    def _batch_stop(self, batch: list[_Req], budget: _PrefillBudget, running_bs: int) -> bool:
        """The stop rules that hold whatever request comes next."""
        if running_bs + len(batch) >= self.max_running:
            self.batch_is_full = True
            return True
        if budget.out_of_memory() and batch:
            self.batch_is_full = True
            return True
        return budget.out_of_tokens()

    def _request_stop(
        self,
        r: _Req,
        hit: int,
        extend: int,
        max_new: int,
        batch: list[_Req],
        budget: _PrefillBudget,
    ) -> bool:
        """The stop rules for request ``r``: it needs ``extend`` new prompt tokens now and
        reserves ``max_new`` output tokens; ``hit`` of its prompt is in the prefix cache."""
        # SGLang checks again under the prefix lock: an evictable prefix this
        # request would lock no longer counts as free.
        if hit > r.done and not r.held:
            lock_cost = self._cache.lock_cost(r.blocks[: self._cache.match(r.blocks)[1]])
            if budget.cannot_reserve(extend + max_new, lock_cost):
                self.batch_is_full = True
                return True
        if not self.radix:
            # SGLang's ignore_eos path without a tree: simulate future memory use.
            if budget.req_states is None:
                budget.req_states = self._ignore_eos_states(batch)
            ok = self._ignore_eos_fits(
                r,
                extend,
                budget.avail - budget.cur_offset,
                budget.avail - budget.rem_total_offset,
                budget.req_states,
            )
            if not ok:
                self.batch_is_full = True
            return not ok
        if budget.cannot_reserve(extend + max_new):
            self.batch_is_full = True
            return True
        return extend >= budget.rem_input and bool(batch)

    def _take_waiting(
        self, r: _Req, matched: int, extend: int, max_new: int, budget: _PrefillBudget
    ) -> bool:
        """Charge ``r`` to the budget and admit it; True if only a chunk of it fits."""
        chunked = budget.rem_chunk is not None and extend > budget.rem_chunk
        if chunked:
            # Chunked prefill: take what the chunk budget leaves (page size 1).
            r.extend = budget.rem_chunk
            budget.take(budget.rem_chunk, 0)
        else:
            r.extend = extend
            budget.take(extend, max_new)
        locked = self._cache.locked
        self._admit(r, matched)
        # Locking a matched prefix turns evictable tokens into used ones.
        budget.avail -= self._cache.locked - locked
        return chunked

    def _drop_admitted(self, ordered: list[_Req], batch: list[_Req], continuing: bool) -> None:
        """Remove the requests of ``batch`` that came from the waiting queue."""
        taken = len(batch) - (1 if continuing else 0)
        if not taken:
            return
        if ordered is self.waiting:
            del self.waiting[:taken]  # fcfs admits a prefix of the queue: O(taken)
        else:
            admitted = {r.rid for r in batch}
            self.waiting = [r for r in self.waiting if r.rid not in admitted]

    def _admit(self, r: _Req, matched: int) -> None:
        """A waiting request enters a prefill batch: lock its cached prefix."""
        if matched > r.done:
            cached = matched - r.done
            r.done = matched
            if not r.held:
                self._lock_matched(r)
            if not r.started:
                r.cached = cached
                self.cached_tokens_total += cached
        r.started = True

    def _ignore_eos_states(self, batch: list[_Req]) -> list[tuple[float, int]]:
        states = []
        for r in self.running.values():
            gen = r.gen + self.counter - r.join
            left = r.output_len - gen
            if left > 0:
                states.append((float(left), r.input_len + gen))
        for r in batch:
            left = r.output_len - r.gen
            if left > 0:
                states.append((float(left), r.input_len + r.gen))
        states.sort()
        return states

    def _ignore_eos_fits(
        self,
        r: _Req,
        extend: int,
        cur_rem: float,
        rem_total: float,
        states: list[tuple[float, int]],
    ) -> bool:
        """``PrefillAdder.add_one_req_ignore_eos``: will every request still fit at its peak?"""
        if extend > min(cur_rem, rem_total):
            return False
        left = r.output_len - r.gen
        if left > 0:
            entry = (float(left), r.input_len + r.gen)
            i = 0
            while i < len(states) and states[i][0] < left:
                i += 1
            states.insert(i, entry)
        rem = cur_rem - r.input_len
        freed = 0
        n = len(states)
        for i, (tokens_left, occupied) in enumerate(states):
            bs = n - i
            if rem + freed - tokens_left * bs <= IGNORE_EOS_RESERVE_TOKENS * bs:
                if left > 0:
                    states.remove(entry)
                return False
            freed += occupied
        return True

    def _run_extend(self, batch: list[_Req], now: float, events: list[TokenEvent]) -> StepOutcome:
        chunks = []
        new_tokens = 0
        cached = 0
        for r in batch:
            chunks.append((r.extend, r.done))
            new_tokens += r.extend
        dec_b = len(self.running) if self.mixed else 0
        dec_ctx = (self._run_ctx + dec_b * self.counter + dec_b) / dec_b if dec_b else 0.0
        duration = self.noise(self.perf.extend_ms(chunks, dec_b, dec_ctx)) / 1000.0
        end = now + duration
        new_seqs = 0
        sampled = dec_b
        positions = float(self._run_gen + dec_b * (self.counter + 1)) if dec_b else 0.0
        if dec_b:
            self._advance_decode(1, events, end)
        for r in batch:
            r.done += r.extend
            r.owned += r.extend
            r.extend = 0
            self._maybe_insert_prefix(r)
            if r is self.chunked:
                continue
            if r.done < r.fill:
                continue  # defensive: an unfinished request not marked chunked waits again
            r.gen += 1  # the extend step samples the next token
            self.generated_total += 1
            sampled += 1
            positions += r.gen
            if r.first_token_at is None:
                r.first_token_at = end
                new_seqs += 1
                cached += r.cached
                events.append(TokenEvent(r.rid, "first_token", r.gen, end, cached_tokens=r.cached))
            if r.gen >= r.output_len:
                self._finish(r, r.gen, end, events)
            else:
                r.fill = r.input_len + r.gen
                self._join_running(r)
        self._evict()
        self._note_gen(end, new_seqs + dec_b)
        self._last_kind = "prefill" if not dec_b else "mixed"
        return StepOutcome(
            duration_s=duration,
            events=events,
            kind=self._last_kind,
            new_seqs=len(batch),
            new_tokens=new_tokens,
            cached_tokens=cached,
            streamed_tokens=sampled,
            streamed_positions=positions,
        )

    # ------------------------------------------------------------------ decode
    @staticmethod
    def _build_pad_table(graph_bs: list[int]) -> list[int]:
        """pad[b] = captured batch size a decode batch of b runs as (0 = eager)."""
        if not graph_bs:
            return [0]
        pad = [0] * (graph_bs[-1] + 1)
        j = 0
        for b in range(1, graph_bs[-1] + 1):
            while graph_bs[j] < b:
                j += 1
            pad[b] = graph_bs[j]
        return pad

    def _graph_pad_for(self, batch: int) -> int | None:
        if 0 < batch < len(self._graph_pad):
            return self._graph_pad[batch]
        return None

    def _run_decode(self, now: float, events: list[TokenEvent], max_steps: int) -> StepOutcome:
        n = len(self.running)
        if self._avail_and_evictable() < n:
            self._retract()
            n = len(self.running)
            steps = 1
        else:
            steps = 1
            if (
                max_steps > 1
                and not self.waiting
                and self.chunked is None
                and self.token_event_interval <= 0
            ):
                to_finish = (
                    self._finish_heap[0][0] - self.counter if self._finish_heap else max_steps
                )
                fits = self._avail_and_evictable() // n
                steps = max(1, min(max_steps, to_finish, fits))
            self.new_token_ratio = max(
                self.new_token_ratio - steps * self.ratio_decay, self.min_ratio
            )
        mean_ctx = (self._run_ctx + n * self.counter) / n + (steps + 1) / 2.0
        # Output tokens already generated, summed over the tokens these steps stream.
        positions = steps * (self._run_gen + n * self.counter) + n * steps * (steps + 1) / 2.0
        per_rank = -(-n // self.perf.dp)  # CUDA graphs are captured per DP rank
        per_step = self.perf.decode_ms(n, mean_ctx, graph_bs=self._graph_pad_for(per_rank))
        duration = self.noise(per_step * steps, steps) / 1000.0
        end = now + duration
        self._advance_decode(steps, events, end)
        self._evict()
        self._note_gen(end, n * steps)
        self._last_kind = "decode"
        return StepOutcome(
            duration_s=duration,
            events=events,
            kind="decode",
            streamed_tokens=n * steps,
            streamed_positions=positions,
            steps=steps,
        )

    def _advance_decode(self, steps: int, events: list[TokenEvent], end: float) -> None:
        """Every running request gains ``steps`` tokens; emit progress and finishes."""
        n = len(self.running)
        self.counter += steps
        self.generated_total += n * steps
        k = self.token_event_interval
        if k > 0 and steps == 1:
            for rid in self._buckets.get(self.counter % k, ()):
                r = self.running[rid]
                gen = r.gen + self.counter - r.join
                if gen < r.output_len:
                    events.append(TokenEvent(rid, "tokens", gen, end))
        heap = self._finish_heap
        while heap and heap[0][0] <= self.counter:
            _, _, rid = heapq.heappop(heap)
            r = self.running.get(rid)
            if r is None or r.join + r.output_len - r.gen > self.counter:
                continue  # stale entry of a retracted / aborted request
            self._leave_running(r)
            self._finish(r, r.gen, end, events)

    def _finish(self, r: _Req, gen: int, end: float, events: list[TokenEvent]) -> None:
        self._release_key(r)
        r.owned = 0
        self.batch_is_full = False
        events.append(TokenEvent(r.rid, "finished", gen, end, cached_tokens=r.cached))

    def _retract(self) -> None:
        """``ScheduleBatch.retract_decode``: free the newest requests until decoding fits."""
        order = sorted(
            self.running.values(),
            key=lambda r: (r.gen + self.counter - r.join, -r.input_len),
            reverse=True,
        )
        # Up to SGLang 0.5.1 retraction went on until 20 decode steps fit; from 0.5.3
        # only until the next one does (autotune.sim.versions.retract_to_next_step).
        steps = 1 if self.settings.retract_to_next_step else RETRACT_DECODE_STEPS
        first = True
        while len(order) > 1 and (first or self._avail_and_evictable() < steps * len(order)):
            first = False
            r = order.pop()
            self._leave_running(r)
            self._release_key(r)
            r.owned = 0
            r.done = 0
            r.fill = r.input_len + r.gen
            self.waiting.append(r)
            self.num_retracted_total += 1
        if order and self._avail_and_evictable() < len(order):
            # SGLang's corner case: one request alone does not fit; it is aborted.
            r = order.pop()
            gen = r.gen + self.counter - r.join
            self._leave_running(r)
            self._release_key(r)
            r.owned = 0
            self._pending.append(TokenEvent(r.rid, "aborted", gen, 0.0))
        decoded = sum(r.gen + self.counter - r.join for r in order)
        max_new = sum(r.output_len for r in order)
        plus_one = 1 if self.settings.ratio_denominator_plus_one else 0  # 0.5.5+
        self.new_token_ratio = min(
            1.0, (decoded + RETRACT_DECODE_STEPS * len(order)) / (max_new + plus_one or 1)
        )
        self.batch_is_full = False

    # ------------------------------------------------------------------ stats
    def _note_gen(self, end: float, tokens: int) -> None:
        w = self._gen_window
        w.append((end, tokens))
        if len(w) > 64:
            del w[:32]

    def _gen_throughput(self) -> float:
        w = self._gen_window
        if len(w) < 2:
            return 0.0
        span = w[-1][0] - w[0][0]
        return sum(t for _, t in w[1:]) / span if span > 0 else 0.0
