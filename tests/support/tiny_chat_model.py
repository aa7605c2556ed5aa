"""A tiny random-weight Llama with a real tokenizer and chat template, built offline.

The tokenizer is a byte-level BPE trained on a small generated text and wrapped as a
``PreTrainedTokenizerFast``; its chat template renders ``documents`` the way RAG templates
do (``Document: {text}``), so the serving layer's document handling is exercised as it is
with epic-tiny. Weights are scaled so logits are decisive (greedy ties do not happen), and
EOS's embedding is zero so greedy decoding never stops early.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.support.tokenizer import train_bpe

WORDS = ("river stone garden lantern copper harbor meadow signal orchard winter canyon violet "
         "engine library falcon glacier market pepper saddle tunnel velvet whisper anchor bridge "
         "candle desert ember forest harvest island jungle kettle ladder marble needle ocean pillow "
         "quartz ribbon silver timber umbrella valley wagon yellow zephyr").split()

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{{ '\\n' }}"
    "{% set turns = messages[1:] %}{% else %}You answer from the documents.{{ '\\n' }}"
    "{% set turns = messages %}{% endif %}"
    "{% for doc in documents or [] %}Document: {{ doc['text'] }}{{ '\\n' }}{% endfor %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}Question: {{ m['content'] }}{{ '\\n' }}Answer:"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('roles must be system (first), user or assistant') }}{% endif %}"
    "{% endfor %}"
)


def sentence(rng: random.Random, num_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(num_words)]
    return " ".join(words).capitalize() + "."


def document(seed: int, num_sentences: int = 4) -> str:
    """A deterministic document of a few sentences."""
    rng = random.Random(seed)
    return " ".join(sentence(rng, rng.randint(5, 9)) for _ in range(num_sentences))


def build_tokenizer():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [sentence(rng, 8) for _ in range(400)] + ["Question: what?\nAnswer: yes\nDocument: "]
    tok = train_bpe(corpus, vocab_size=384, special_tokens=["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", chat_template=CHAT_TEMPLATE,
                                   clean_up_tokenization_spaces=False, model_max_length=1024)


def build_tiny_model(out_dir: Path, seed: int = 7) -> Path:
    """Write config.json, model.safetensors and the tokenizer files into ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.support.tiny_hf_models import randomize_

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True, rms_norm_eps=1e-6)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    randomize_(model, seed)
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.eos_token_id].zero_()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
