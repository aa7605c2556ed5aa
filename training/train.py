"""Train epic-tiny: tokenizer, Llama model and Hugging Face directory, from a seed.

    python -m training.train --out models/epic-tiny --seed 0 --steps 1400 --max-minutes 58

Data are generated on the fly (train-split entity names only; validation uses held-out
names). Every prompt starts with BOS at position 0 and holds 3-6 documents in random order,
each tokenized on its own (training.prompt); after the first answer, ``--extra-questions``
more question/answer turns about the same documents follow. The loss is cross-entropy on
every next token, weighted 1 on answers and EOS and ``--context-weight`` elsewhere.

``--chunk-local-fraction`` trains a share of the prompts with chunk-local attention
(Block-Attention style): each document attends only to BOS and to itself, exactly the KV a
chunk compiled alone and linked has, while the question and answers attend to everything::

    keys ->       BOS sys doc1 doc2 question
    BOS            x
    sys            x   x
    doc1           x       x            (doc1 sees BOS and doc1 only)
    doc2           x            x       (doc2 sees BOS and doc2 only)
    question       x   x   x    x   x

so linked KV is in distribution for the model and the ``naive`` link policy reads its
documents as the model was trained to. The rest of the prompts keep full causal attention.

Every ``--eval-every-min`` minutes the model is scored on a validation set; the best model so
far is written to ``--out`` (config, safetensors, tokenizer, generation config), together
with the training log and the loss curve. Runs on CPU (or CUDA when ``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

from training.data import Generator
from training.prompt import SYSTEM_LINE, answer_ids, answer_text, build_prompt, document_text, question_text
from training.qa import exact_match_accuracy
from training.tokenizer import train_tokenizer

LOG_NAME = "training_log.jsonl"
CURVE_NAME = "loss_curve.png"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_tokenizer(args: argparse.Namespace):
    gen = Generator(args.seed + 1, "train", args.two_hop_fraction)
    texts = [SYSTEM_LINE]
    for ex in gen.examples(args.tokenizer_examples):
        texts += [document_text(d) for d in ex.documents]
        texts += [question_text(ex.question), answer_text(ex.answer)]
    return train_tokenizer(texts, args.vocab_size)


def build_model(args: argparse.Namespace, tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.context,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def training_row(gen: Generator, tokenizer, extra_questions: int, context_weight: float):
    """One training sequence, its per-position loss weights and its documents' spans.

    The prompt is exactly what serving sees; after the answer and EOS, further questions
    about the same documents follow, each with its answer and EOS (more supervised answer
    tokens per prompt token)::

        [BOS][system][doc]...[doc][Question: q1\nAnswer:][ a1][EOS][Question: q2\nAnswer:][ a2][EOS]...

    ``weights[i]`` scores predicting token i+1: 1 on answer tokens and EOS, ``context_weight``
    elsewhere. ``spans`` are the documents' half-open [start, end) positions.
    """
    ex, extras = gen.example_with_extras(extra_questions)
    prompt = build_prompt(tokenizer, ex.documents, ex.question)
    ids = prompt.flat()
    spans = [(s, s + len(c)) for s, c in zip(prompt.chunk_starts(), prompt.chunk_ids)]
    weights = [context_weight] * (len(ids) - 1)
    target = answer_ids(tokenizer, ex.answer)
    ids, weights = ids + target, weights + [1.0] * len(target)
    for question, answer in extras:
        q_ids = tokenizer(question_text(question), add_special_tokens=False)["input_ids"]
        target = answer_ids(tokenizer, answer)
        # The first question token follows EOS; predicting it carries no information.
        weights += [0.0] + [context_weight] * (len(q_ids) - 1) + [1.0] * len(target)
        ids += q_ids + target
    return ids, weights, spans


def chunk_local_mask(width: int, spans: list[tuple[int, int]]) -> torch.Tensor:
    """[width, width] bool, True where a query row may attend to a key column: causal, except
    that each span's rows see only position 0 (BOS) and their own span."""
    mask = torch.tril(torch.ones(width, width, dtype=torch.bool))
    for start, end in spans:
        mask[start:end, 1:start] = False
    return mask


def make_batches(gen: Generator, tokenizer, args: argparse.Namespace, group: int = 4):
    """``group`` right-padded batches of similar length (less padding), in random order.

    Each batch is ``input_ids [B, T]``, next-token ``targets [B, T]``, loss ``weights [B, T]``
    and an attention ``mask [B, 1, T, T]`` (bool), or None when every row is plain causal.
    """
    batch_size = args.batch_size
    rows = [training_row(gen, tokenizer, args.extra_questions, args.context_weight)
            for _ in range(batch_size * group)]
    local = [gen.rng.random() < args.chunk_local_fraction for _ in rows]
    rows = [(ids, w, spans if is_local else []) for (ids, w, spans), is_local in zip(rows, local)]
    rows.sort(key=lambda r: len(r[0]))
    batches = []
    for b in range(group):
        part = rows[b * batch_size : (b + 1) * batch_size]
        width = max(len(ids) for ids, _, _ in part)
        input_ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
        targets = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
        weights = torch.zeros((batch_size, width), dtype=torch.float32)
        for i, (ids, w, _) in enumerate(part):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            targets[i, : len(ids) - 1] = torch.tensor(ids[1:])
            weights[i, : len(w)] = torch.tensor(w)
        mask = None
        if any(spans for _, _, spans in part):
            mask = torch.stack([chunk_local_mask(width, spans) for _, _, spans in part])[:, None]
        batches.append((input_ids, targets, weights, mask))
    gen.rng.shuffle(batches)
    return batches


def progress_at(step: int, elapsed_s: float, args: argparse.Namespace) -> float:
    """Fraction of the run done: by steps, or by wall-clock time when ``--max-minutes`` binds.

    With a time budget the run ends (with a full learning-rate decay) when the budget is
    spent, whatever share of a shared CPU it got; on a free machine the step budget binds and
    the run is exactly reproducible.
    """
    by_steps = step / args.steps
    if args.max_minutes <= 0:
        return by_steps
    return max(by_steps, elapsed_s / (args.max_minutes * 60))


def lr_at(step: int, progress: float, args: argparse.Namespace) -> float:
    """Linear warm-up over ``--warmup`` steps, then cosine decay to 10% of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    return args.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def plot_loss(log: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val_accuracy" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="weighted loss", lw=1)
    ax.plot([r["step"] for r in train], [r["answer_loss"] for r in train], label="answer loss", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [r["val_accuracy"] for r in val], "k.-", label="val exact match")
        ax2.set_ylabel("validation exact match")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title("epic-tiny training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Recorded by ``from_pretrained`` (where a model was loaded from), not part of the tokenizer.
LOAD_ONLY_KEYS = ("is_local", "local_files_only")


def save(model, tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for key in LOAD_ONLY_KEYS:
        tokenizer.init_kwargs.pop(key, None)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    ).save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("models/epic-tiny"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", type=Path,
                   help="continue from this saved model (tokenizer and architecture flags are then ignored); "
                        "give a new --seed so the data differ from the first run")
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="wall-clock budget; the schedule follows whichever budget runs out first (0: steps only)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--context-weight", type=float, default=0.2)
    p.add_argument("--extra-questions", type=int, default=8,
                   help="further QA pairs about the same documents after the first answer")
    p.add_argument("--two-hop-fraction", type=float, default=0.2)
    p.add_argument("--chunk-local-fraction", type=float, default=0.0,
                   help="share of prompts whose documents attend only to BOS and themselves (linked KV)")
    p.add_argument("--vocab-size", type=int, default=3072)
    p.add_argument("--tokenizer-examples", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--context", type=int, default=2048, help="max_position_embeddings")
    p.add_argument("--eval-every-min", type=float, default=10.0)
    p.add_argument("--val-n", type=int, default=100)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out: Path = args.out
    if args.init_from:
        # Continue training a saved model (its own tokenizer and architecture).
        tokenizer = AutoTokenizer.from_pretrained(args.init_from)
        model = LlamaForCausalLM.from_pretrained(args.init_from).to(args.device)
    else:
        tokenizer = build_tokenizer(args)
        model = build_model(args, tokenizer).to(args.device)
    num_params = sum(t.numel() for t in model.parameters())
    decay = [t for n, t in model.named_parameters() if t.dim() >= 2]
    no_decay = [t for n, t in model.named_parameters() if t.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    train_gen = Generator(args.seed, "train", args.two_hop_fraction)
    val_set = Generator(args.seed + 1000, "heldout", 0.1).examples(args.val_n)

    out.mkdir(parents=True, exist_ok=True)
    header = {"args": {k: str(v) for k, v in vars(args).items()}, "num_params": num_params,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads()}
    log: list[dict] = [header]
    (out / LOG_NAME).write_text(json.dumps(header) + "\n")
    start = last_eval = time.time()
    tokens, best = 0, -1.0
    run_loss = run_answer = 0.0
    run_steps = 0
    queue: list = []
    step, progress = 0, 0.0
    while progress < 1.0:
        lr = lr_at(step, progress, args)
        for group in opt.param_groups:
            group["lr"] = lr
        if not queue:
            queue = make_batches(train_gen, tokenizer, args)
        input_ids, targets, weights, mask = queue.pop()
        input_ids, targets, weights = (t.to(args.device) for t in (input_ids, targets, weights))
        mask = mask.to(args.device) if mask is not None else None
        logits = model(input_ids=input_ids, attention_mask=mask).logits  # [B, T, V]
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        ce = ce.view_as(weights)
        loss = (ce * weights).sum() / weights.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int((weights > 0).sum())
        answer_mask = weights == 1.0
        run_loss += loss.item()
        run_answer += (ce[answer_mask].mean()).item()
        run_steps += 1
        step += 1
        progress = progress_at(step, time.time() - start, args)
        last = progress >= 1.0
        if step % args.log_every == 0 or last:
            rec = {"step": step, "loss": run_loss / run_steps, "answer_loss": run_answer / run_steps,
                   "lr": lr, "progress": progress, "tokens": tokens, "elapsed_s": time.time() - start}
            run_loss = run_answer = 0.0
            run_steps = 0
            log.append(rec)
            with (out / LOG_NAME).open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
        if last or time.time() - last_eval >= args.eval_every_min * 60:
            model.eval()
            acc = exact_match_accuracy(model, tokenizer, val_set)
            model.train()
            last_eval = time.time()
            rec = {"step": step, "val_accuracy": acc["all"], "val": acc,
                   "elapsed_s": time.time() - start, "tokens": tokens}
            log.append(rec)
            if acc["all"] >= best:  # ties go to the later, lower-loss model
                best = acc["all"]
                save(model, tokenizer, out)
                rec["saved"] = True
            with (out / LOG_NAME).open("a") as f:
                f.write(json.dumps(rec) + "\n")
            plot_loss(log, out / CURVE_NAME)
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
