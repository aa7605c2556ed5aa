"""``transformers`` as the reference our engine is compared with: its model, its greedy
continuation, and a failure message that says where and how narrowly the two diverge."""

from __future__ import annotations

import pytest
import torch


def hf_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()


@torch.no_grad()
def hf_greedy(model, prompt: list[int], max_tokens: int) -> tuple[list[int], list[float]]:
    """transformers' greedy continuation and, per step, the gap between its two best logits."""
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_tokens,
        do_sample=False,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    gaps = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores]
    return out.sequences[0, len(prompt) :].tolist(), gaps


def assert_same_tokens(ours: list[int], theirs: list[int], gaps: list[float], what: str) -> None:
    if ours != theirs:
        i = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        gap = gaps[i] if i < len(gaps) else float("nan")
        pytest.fail(f"{what}: diverges at output {i} (transformers' top-2 logit gap there: {gap:.4g})\n"
                    f"ours:         {ours}\ntransformers: {theirs}")  # fmt: skip
