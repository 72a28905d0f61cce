"""Generate tiny GGUF chat models (~1 MB) that a real llama-server can load.

Each model is a 2-layer llama with random weights plus a few hand-set ones, a SentencePiece
("llama") vocabulary and a real chat template, so that the server executes the same
template logic (role checks, tool blocks) that a real model's template would.

The hand-set weights make the gibberish usable in tests:

* Embedding dimension 0 is a constant for every token, so column 0 of ``output.weight``
  acts as a per-token logit bias: byte and control tokens are suppressed, the end-of-turn
  token and ``"`` ``}`` ``]`` are lifted, so replies stop and constrained JSON closes.
* Every token has a countdown level; the output favours the next level down and, at
  level 1, the end-of-turn token (or, where a grammar forbids ending, the token that
  closes the JSON value). Free replies therefore end within ``MAX_LEVEL`` tokens.
* In the tools model, one attention head looks for a ``<tools>`` token in the prompt and
  writes a "tools offered" feature; one FFN unit ANDs it with "the last token is the
  generation prompt's newline" to lift ``<tool_call>`` at the start of a reply.  The model
  therefore opens a native tool call when (and only when) the prompt lists tools, and the
  server's tool-call grammar makes the call well formed.

Usage: ``python -m testbed.models OUT_DIR`` writes one ``<name>.gguf`` per template.
"""

from __future__ import annotations

import sys
import hashlib
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

TEMPLATES_DIR = Path(__file__).with_name("chat_templates")

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 128
CONTEXT_LENGTH = 32768
ROPE_BASE = 1e12  # ~no rotation in the high head dims, so the hand-set head ignores position

BIAS_DIM, TOOLS_FEATURE_DIM, TOOLS_KEY_DIM, NEWLINE_DIM, CALL_NOW_DIM = 0, 1, 2, 3, 4
# Tools model only: after token A, strongly favour token B (one dimension per pair), so a
# native call is written as the template shows it: <tool_call>\n{...}</tool_call><eos>.
TOOL_BIGRAMS = (("<tool_call>", "<0x0A>"), ("}", "</tool_call>"), ("</tool_call>", "<|im_end|>"))
BIGRAM_DIM0 = 5
MAX_LEVEL = 10  # longest free-running reply, in tokens
LEVEL_DIM0 = BIGRAM_DIM0 + len(TOOL_BIGRAMS) - 1  # then the one-hot countdown level (1..MAX_LEVEL)
NOISE_DIM0 = LEVEL_DIM0 + MAX_LEVEL + 1  # the rest are random: gibberish that varies
LEVEL_PULL = 6.0  # logit bonus for the next level down
STRUCTURAL = ('"', "}", "]")

WORDS = """
the be to of and a in that have I it for not on with he as you do at this but his by from
they we say her she or an will my one all would there their what so up out if about who get
which go me when make can like time no just him know take people into year your good some
could them see other than then now look only come its over think also back after use two how
our work first well way even new want because any these give day most us is are was were been
has had did does said hello hi yes ok okay thanks please help task goal answer question reply
user assistant system tool tools function functions name arguments argument call calls result
results content role message messages json object array string number integer boolean null true
false type properties required description value values key keys list file files read write
search web command commands run finish step steps plan thoughts reasoning criticism speak text
error errors output input data code python shell execute weather city temperature unit celsius
fahrenheit add sum subtract multiply divide math query page url open close save load start stop
agent agents model models local server test tests small fast smart big short long first last next
previous continue done again must should respond format only never always example examples
response responses parameters parameter schema string enum items minimum maximum default
INST SYS tool_call tool_response get_weather get_time lookup location date today tomorrow
""".split()

SPIECE_SPACE = "\u2581"


@dataclass(frozen=True)
class ModelSpec:
    """One test-bed model: its chat template and the special tokens the template uses."""

    name: str
    template_file: str
    specials: tuple[str, ...]  # CONTROL tokens beyond <unk> <s> </s>
    eos: str = "</s>"
    bos: str = "<s>"
    add_bos: bool = True
    tools_head: bool = False

    @property
    def chat_template(self) -> str:
        return (TEMPLATES_DIR / self.template_file).read_text()


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mistral", "mistral-v0.2.jinja", specials=()),
        ModelSpec(
            "chatml", "chatml.jinja", specials=("<|im_start|>", "<|im_end|>"),
            eos="<|im_end|>", add_bos=False,
        ),
        ModelSpec(
            "llama3", "llama3.jinja",
            specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                      "<|end_header_id|>", "<|eot_id|>"),
            bos="<|begin_of_text|>", eos="<|eot_id|>",
        ),
        ModelSpec(
            "hermes", "hermes-tools.jinja",
            specials=("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
                      "<tools>", "</tools>", "<tool_response>", "</tool_response>"),
            eos="<|im_end|>", add_bos=False, tools_head=True,
        ),
    )
}


def build_vocab(spec: ModelSpec) -> tuple[list[str], list[float], list[int]]:
    """An SPM vocabulary: specials, 256 byte tokens, ASCII characters, words and all their prefixes.

    Scores grow with length so the SPM merger climbs from characters to whole words.
    """
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for special in spec.specials:
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
    pieces: dict[str, None] = {}
    for code in range(32, 127):
        pieces[SPIECE_SPACE if code == 32 else chr(code)] = None
    for word in WORDS:
        for form in (word, SPIECE_SPACE + word, word.capitalize(), SPIECE_SPACE + word.capitalize()):
            for end in range(2, len(form) + 1):
                pieces[form[:end]] = None
    for piece in pieces:
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0 if t != gguf.TokenType.NORMAL else -100.0 + len(tok) for tok, t in zip(tokens, types, strict=True)]
    return tokens, scores, [int(t) for t in types]


def token_levels(tokens: list[str], types: list[int], rng: np.random.Generator) -> np.ndarray:
    """A countdown level per token: the model moves one level down per generated token.

    Replies start from the prompt's last token (a template token, level MAX_LEVEL) and the
    end-of-turn token is favoured after level 1, so every reply ends within MAX_LEVEL tokens.
    """
    levels = rng.integers(1, MAX_LEVEL + 1, size=len(tokens))
    for i, (tok, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != gguf.TokenType.NORMAL or tok in STRUCTURAL:
            levels[i] = MAX_LEVEL
    return levels


def logit_bias(spec: ModelSpec, tokens: list[str], types: list[int], rng: np.random.Generator) -> np.ndarray:
    """Per-token bias carried by embedding dimension 0 (see the module docstring)."""
    bias = rng.normal(0.0, 0.5, size=len(tokens)).astype(np.float32)
    for i, kind in enumerate(types):
        if kind in (gguf.TokenType.BYTE, gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN):
            bias[i] = -30.0
    for tok in STRUCTURAL:  # so constrained strings, objects and arrays close quickly
        bias[tokens.index(tok)] = 2.5
    bias[tokens.index(spec.eos)] = 0.0
    if spec.tools_head:  # unlikely by themselves; the tools features and bigrams lift them
        bias[tokens.index("<tool_call>")] = -10.0
        bias[tokens.index("</tool_call>")] = -10.0
    return bias


def build_weights(spec: ModelSpec, n_vocab: int, bias: np.ndarray, levels: np.ndarray, tokens: list[str],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensors in llama.cpp's layout (numpy shape = reversed ggml shape).

    The residual stream stays close to the last token's embedding (attention and FFN are
    small and write only the noise dimensions), which makes the hand-set channels reliable.
    """

    def rand(*shape: int, std: float = 0.01) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    embd = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    embd[:, BIAS_DIM] = 1.0
    embd[np.arange(n_vocab), LEVEL_DIM0 + levels] = 1.0
    embd[:, NOISE_DIM0:] = rand(n_vocab, N_EMBD - NOISE_DIM0, std=0.1)
    scale = 1.0 / np.sqrt(np.mean(embd ** 2, axis=1)).mean()  # what RMS norm multiplies by

    output = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    output[:, BIAS_DIM] = bias / scale
    for level in range(2, MAX_LEVEL + 1):  # from level L, favour tokens of level L-1 ...
        output[levels == level - 1, LEVEL_DIM0 + level] = LEVEL_PULL / scale
    output[tokens.index(spec.eos), LEVEL_DIM0 + 1] = (LEVEL_PULL + 6.0) / scale  # ... and end at 1,
    for tok in (*STRUCTURAL, ","):  # or, where a grammar forbids ending, close the JSON value
        output[tokens.index(tok), LEVEL_DIM0 + 1] = LEVEL_PULL / scale
    output[tokens.index('"'), LEVEL_DIM0 + 1] = (LEVEL_PULL + 2.0) / scale  # strings first
    output[:, NOISE_DIM0:] = rand(n_vocab, N_EMBD - NOISE_DIM0, std=0.2)

    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": embd,
        "output_norm.weight": np.ones(N_EMBD, dtype=np.float32),
        "output.weight": output,
    }
    for layer in range(N_LAYER):
        p = f"blk.{layer}."
        wq, wk, wv, wo = (rand(N_EMBD, N_EMBD) for _ in range(4))
        ffn_gate, ffn_up, ffn_down = rand(N_FF, N_EMBD), rand(N_FF, N_EMBD), rand(N_EMBD, N_FF)
        wo[:NOISE_DIM0, :] = 0.0  # random parts never write the hand-set channels
        ffn_down[:NOISE_DIM0, :] = 0.0
        if spec.tools_head and layer == 0:
            _set_tools_head(wq, wk, wv, wo)
        if spec.tools_head and layer == 1:
            _set_call_now_unit(ffn_gate, ffn_up, ffn_down)
        tensors.update({
            p + "attn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            p + "attn_q.weight": wq,
            p + "attn_k.weight": wk,
            p + "attn_v.weight": wv,
            p + "attn_output.weight": wo,
            p + "ffn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            p + "ffn_gate.weight": ffn_gate,
            p + "ffn_up.weight": ffn_up,
            p + "ffn_down.weight": ffn_down,
        })
    if spec.tools_head:
        embd[tokens.index("<tools>"), TOOLS_KEY_DIM] = 1.0
        embd[tokens.index("<0x0A>"), NEWLINE_DIM] = 1.0
        output[tokens.index("<tool_call>"), CALL_NOW_DIM] = 12.0
        for dim, (first, then) in enumerate(TOOL_BIGRAMS, start=BIGRAM_DIM0):
            embd[tokens.index(first), dim] = 1.0
            output[tokens.index(then), dim] = 80.0 / scale
    return tensors


def _set_tools_head(wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, wo: np.ndarray) -> None:
    """Head 0 attends to ``<tools>`` from every position and copies a flag into dim 1.

    The query/key pair lives in the head's last dimension pair, which RoPE barely rotates
    with ROPE_BASE, so the score does not depend on distance.  Its value is ~20 (softmax
    weight ~1 even over thousands of positions); without a ``<tools>`` token in the prompt
    no key is lit and the head adds nothing.
    """
    q_row = HEAD_DIM - 1  # head 0, last dimension
    wq[:HEAD_DIM, :] = 0.0
    wk[:HEAD_DIM, :] = 0.0
    wv[:HEAD_DIM, :] = 0.0
    wq[q_row, BIAS_DIM] = 1.6
    wk[q_row, TOOLS_KEY_DIM] = 1.6
    wv[0, TOOLS_KEY_DIM] = 1.0
    wo[:, :HEAD_DIM] = 0.0
    wo[TOOLS_FEATURE_DIM, 0] = 0.25


def _set_call_now_unit(gate: np.ndarray, up: np.ndarray, down: np.ndarray) -> None:
    """FFN unit 0 fires when tools are offered AND the last token is a newline.

    A reply starts right after the generation prompt's newline, so this lifts ``<tool_call>``
    exactly once, at the start of a reply; inside the call's arguments it stays quiet.
    Gate: ~+0.6 when both features are on, <= -0.4 with one of them (times a large gain).
    """
    gain = 4.0
    gate[0, :] = 0.0
    up[0, :] = 0.0
    down[:, 0] = 0.0
    gate[0, TOOLS_FEATURE_DIM] = gain
    gate[0, NEWLINE_DIM] = gain
    gate[0, BIAS_DIM] = -1.5 * gain
    up[0, BIAS_DIM] = 0.2
    down[CALL_NOW_DIM, 0] = 0.1


def write_model(spec: ModelSpec, path: Path, seed: int = 1234) -> Path:
    """Write one GGUF file and return its path."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = build_vocab(spec)
    bias = logit_bias(spec, tokens, types, rng)
    levels = token_levels(tokens, types, rng)
    tensors = build_weights(spec, len(tokens), bias, levels, tokens, rng)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"llamafile-provider test bed ({spec.name})")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(tokens.index(spec.bos))
    writer.add_eos_token_id(tokens.index(spec.eos))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(spec.add_bos)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if spec.eos != "</s>":
        writer.add_eot_token_id(tokens.index(spec.eos))
    writer.add_chat_template(spec.chat_template)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def generator_digest() -> str:
    """A hash of this generator and its templates: cached models are keyed by it."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for template in sorted(TEMPLATES_DIR.glob("*.jinja")):
        digest.update(template.read_bytes())
    return digest.hexdigest()[:12]


def ensure_models(out_dir: Path) -> dict[str, Path]:
    """Write every test-bed model into ``out_dir`` unless it is already there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    key = generator_digest()
    for name, spec in SPECS.items():
        path = out_dir / f"{name}-{key}.gguf"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            write_model(spec, tmp)
            tmp.rename(path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    for model, model_path in ensure_models(Path(sys.argv[1] if len(sys.argv) > 1 else "models")).items():
        print(f"{model}\t{model_path}")
