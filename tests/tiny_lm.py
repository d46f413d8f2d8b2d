"""A tiny random Qwen2 model and a local BPE tokenizer for the integration tests (no download)."""
from __future__ import annotations

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    lines = []
    for a in range(30):
        for b in range(0, 30, 7):
            lines.append(f"What is {a} + {b}? Put the answer in \\boxed{{}}. The answer is $\\boxed{{{a + b}}}$.")
    return lines


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory on arithmetic text (about 300 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_qwen2(vocab_size: int, seed: int = 0, layers: int = 4):
    """A randomly initialised Qwen2 causal LM with hidden size 32."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).eval()


def save_tiny(folder: str, seed: int = 0):
    """Save the tiny model and tokenizer to ``folder`` (loadable with ``from_pretrained``)."""
    tokenizer = tiny_tokenizer()
    model = tiny_qwen2(len(tokenizer), seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
