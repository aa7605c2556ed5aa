"""Train epic-tiny's byte-level BPE tokenizer and wrap it as a Hugging Face fast tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from training.prompt import SYSTEM_LINE

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# Renders exactly what training.prompt builds: BOS, the system line (a system message
# replaces it), the documents (``documents=[{"text": ...}]``), then question/answer turns.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] | trim }}{{ '\\n' }}{% set turns = messages[1:] %}"
    "{% else %}" + SYSTEM_LINE.replace("\n", "{{ '\\n' }}") + "{% set turns = messages %}{% endif %}"
    "{% for doc in documents or [] %}Document: {{ doc['text'] }}{{ '\\n' }}{% endfor %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}Question: {{ m['content'] }}{{ '\\n' }}Answer:"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ raise_exception('roles must be system (first), user or assistant') }}{% endif %}"
    "{% endfor %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE over ``texts`` with BOS/EOS/PAD; ``tokenizer(text)`` prepends BOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )
