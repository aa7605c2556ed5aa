"""Structured output through xgrammar: grammars compiled per request, one bitmask per step.

    SamplingParams.structured --compile (cached, caller's thread)--> CompiledGrammar
      per sequence: GrammarMatcher  --fill_next_token_bitmask--> row of the step's bitmask
      sampler: apply_token_bitmask_inplace(logits, bitmask, indices=constrained rows)
      after the draw: matcher.accept_token(token); a terminated matcher ends the sequence

The matcher permits a stop token only where the grammar is complete, so a finished sequence's
text always belongs to the grammar.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import torch

from engine.sampling_params import StructuredOutput


class GrammarBook:
    """Compiles structured-output constraints for one tokenizer (thread-safe; compiled grammars
    are cached by xgrammar)."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int]):
        import xgrammar

        self._xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=list(stop_token_ids))
        self.vocab_size = vocab_size
        self._compiler = xgrammar.GrammarCompiler(info)
        self._lock = threading.Lock()

    def compile(self, spec: StructuredOutput):
        """The compiled grammar of a constraint.

        Raises:
            ValueError: the schema, regex or grammar is invalid.
        """
        c = self._compiler
        try:
            with self._lock:
                if spec.kind == "json_schema":
                    return c.compile_json_schema(spec.spec, any_whitespace=False)
                if spec.kind == "json_object":  # OpenAI's JSON mode: an object, compact
                    return c.compile_json_schema('{"type": "object"}', any_whitespace=False)
                if spec.kind == "regex":
                    return c.compile_regex(spec.spec)
                if spec.kind == "choice":
                    return c.compile_grammar("root ::= " + " | ".join(json.dumps(s) for s in spec.choices))
                return c.compile_grammar(spec.spec)
        except RuntimeError as e:
            raise ValueError(f"invalid {spec.kind} constraint: {str(e).splitlines()[-1][-300:]}") from None

    def matcher(self, compiled):
        return self._xgr.GrammarMatcher(compiled)

    def bitmask(self, matchers: Sequence[object | None]) -> tuple[torch.Tensor | None, list[int]]:
        """The step's bitmask [M, ceil(vocab / 32)] int32 and the rows it constrains."""
        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return None, []
        mask = self._xgr.allocate_token_bitmask(len(matchers), self.vocab_size)
        for i in rows:
            matchers[i].fill_next_token_bitmask(mask, i)
        return mask, rows
