"""Write notebooks/colab_quickstart.ipynb from the cells below, so the notebook is reviewed as Python.

    python scripts/make_colab_notebook.py          # rewrite the notebook
    python scripts/make_colab_notebook.py --check  # exit 1 if the committed notebook differs

Edit the cells here, never the .ipynb: tests/test_notebook.py checks the two agree. Cells get fixed
ids (the test finds its cells by id) and no outputs.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab_quickstart.ipynb"

# (id, "markdown" | "code", source); the cell with id "parameters" is tagged `parameters` (papermill).
CELLS: list[tuple[str, str, str]] = [
    (
        "intro",
        "markdown",
        """
        # Pre-train BERT on *Meditations* with JAX/Flax: a Colab quickstart

        This notebook pre-trains BERT on Marcus Aurelius' *Meditations* with the two objectives of the
        original paper, using `bert_flax` (transformers' `FlaxBertForPreTraining`, a jitted data-parallel
        training step, Optax and Orbax), then evaluates it, plots its curves, asks it for predictions and
        hands the weights to PyTorch.

        - **Masked language modelling (MLM).** About 15% of the tokens of every sequence are hidden (mostly
          replaced by `[MASK]`) and the model predicts the original tokens from the context on both sides.
          This is what teaches BERT bidirectional representations of words in context.
        - **Next sentence prediction (NSP).** Every example is a pair of segments A and B, where B follows A
          in the text half of the time and comes from another paragraph otherwise. The model classifies
          the pair from its `[CLS]` token, which is meant to teach relations between sentences.

        **What it does:** install the package, show the devices JAX sees, choose a config for them,
        pre-train (with a held-out evaluation), plot the loss curves, fill a masked word and judge a next
        sentence, then export to a PyTorch `transformers` directory and check that PyTorch predicts the
        same word.

        **Runtime** (*Runtime → Change runtime type*):
        - **TPU** or **GPU**: continued pre-training of `bert-base-uncased` with MLM + NSP
          (`configs/meditations.yaml`; downloads the model from the Hugging Face hub). Colab's TPU runtime
          is a single-chip **v5e-1** (a v6e-1 on paid tiers) since September 2025, and its GPU runtimes
          have one GPU: one device. The global batch of 32 is split over however many devices there are,
          so an older TPU v2-8 (8 devices) runs the same config.
        - **CPU**: a small BERT (4 layers, hidden 256) from scratch, with a WordPiece vocabulary learned
          on the corpus (`configs/meditations_scratch.yaml`; no hub). A few minutes on Colab's 2 cores.

        Written for Colab's runtimes as documented in November 2026: the GPU image built on CUDA 12.8
        (NVIDIA driver 550–570, `jax-cuda12-plugin` preinstalled) and the v5e-1 / v6e-1 TPU runtimes.
        """,
    ),
    (
        "parameters-md",
        "markdown",
        """
        ## Parameters

        **Replace `REPO_URL` with the repository's URL** (the value below is a placeholder). The cell is
        tagged `parameters`, so `papermill` can set any of these from the command line.

        - `INSTALL`: clone the repository into `REPO_DIR` (or pull it) and `pip install` it. Set it to
          `False` when the notebook runs inside a checkout where the package is already installed.
        - `CORPUS`: empty uses *Meditations*, shipped in the repository (`data/meditations.txt`); or the
          path of a UTF-8 text file, one paragraph per line (each paragraph is an NSP document).
        - `CONFIG`: empty chooses by accelerator (below); or any file in `configs/`.
        - `OVERRIDES`: config overrides as `section.key=value`, e.g. `["train.steps=200", "eval.every=50"]`.
        - `RUN_DIR`, `EXPORT_DIR`: relative to the repository root. On Colab, a `RUN_DIR` on Google Drive
          (`/content/drive/MyDrive/...`, after mounting it) survives a disconnected runtime.
        """,
    ),
    (
        "parameters",
        "code",
        """
        INSTALL = True
        REPO_URL = "https://github.com/bert-flax/bert_flax.git"  # placeholder: the repository's URL
        REPO_DIR = "bert_flax"
        CORPUS = ""
        CONFIG = ""
        OVERRIDES = []
        RUN_DIR = "runs/colab"
        EXPORT_DIR = "exported/colab"
        """,
    ),
    (
        "install-md",
        "markdown",
        """
        ## 1. Install

        `scripts/accelerator.py` reads the machine before JAX is installed and picks the pip extras:
        `torch` always (export check and PyTorch inference), plus
        - on a GPU, by the driver `nvidia-smi` reports: `cuda13` (JAX's CUDA 13 wheels) from driver 580,
          `cuda12` from 525 (Colab's GPU image: CUDA 12.8, driver 550–570); an older driver is an error.
          The other CUDA major's JAX plugins are uninstalled first, because two plugins clash;
        - on a TPU (a Google PCI device with a TPU chip's device id, as JAX checks): `tpu`;
        - otherwise nothing more: JAX on the CPU.

        **This downgrades preinstalled packages**: Flax models exist only in transformers 4, so pip replaces
        Colab's transformers 5.x with 4.57 and huggingface_hub 1.x with 0.x. Other preinstalled packages
        that want the newer ones may print warnings; this notebook does not use them. A failed install
        stops here, with pip's output above. If pip asks for a restart, restart the runtime and run the
        notebook again from the top: the clone is reused.

        JAX never starts a device in this notebook's own process: every step that needs one is a `bert-flax`
        command in a subprocess, because a TPU can be held by one process only and JAX on a GPU reserves most
        of its memory for the first process that uses it. `check` stops the notebook when such a command fails.
        """,
    ),
    (
        "install",
        "code",
        """
        import json
        import os
        import shlex
        import subprocess
        import sys
        from pathlib import Path

        if CORPUS and Path(CORPUS).expanduser().exists():
            CORPUS = str(Path(CORPUS).expanduser().resolve())  # a relative path means: from where we started


        def run_json(*command: str) -> dict:
            \"\"\"The JSON that a command prints on its last line; its stderr if it fails.\"\"\"
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{command[0]} failed with exit code {done.returncode}:\\n{done.stderr}")
            return json.loads(done.stdout.strip().splitlines()[-1])


        def check(what: str) -> None:
            \"\"\"Stop the notebook if the shell command just run (a `!` line) failed; its error is printed above.\"\"\"
            code = get_ipython().user_ns.get("_exit_code", 0)
            if code:
                raise RuntimeError(f"{what} failed with exit code {code}; its output is above")


        if INSTALL:
            if not Path("bert_flax/__init__.py").is_file():  # not yet inside the checkout (a rerun of this cell is)
                if not Path(REPO_DIR, ".git").is_dir():
                    !git clone --depth 1 {shlex.quote(REPO_URL)} {shlex.quote(REPO_DIR)}
                    check("git clone")
                os.chdir(REPO_DIR)
            !git pull --ff-only
            check("git pull")
        else:  # inside a checkout: the repository root, or notebooks/ beside it
            root = next((d for d in (Path.cwd(), Path.cwd().parent) if Path(d, "bert_flax/__init__.py").is_file()), None)
            assert root is not None, f"INSTALL is False but {Path.cwd()} is not in a bert_flax checkout"
            os.chdir(root)

        ACCELERATOR = run_json(sys.executable, "scripts/accelerator.py", "--json")
        RUNTIME = ACCELERATOR["runtime"]
        print(f"runtime: {RUNTIME} ({ACCELERATOR['detail']}); pip extras: {ACCELERATOR['extras']}")
        if INSTALL:
            PYTHON, EXTRAS, CLASHING = shlex.quote(sys.executable), ACCELERATOR["extras"], " ".join(ACCELERATOR["uninstall"])
            if CLASHING:
                !{PYTHON} -m pip uninstall --quiet --yes {CLASHING}
                check("pip uninstall")
            !{PYTHON} -m pip install --quiet -e ".[{EXTRAS}]"
            check("pip install")
        print("working directory:", Path.cwd())
        """,
    ),
    (
        "devices-md",
        "markdown",
        """
        ## 2. Devices

        What JAX sees, asked in a subprocess: one `TpuDevice` on Colab's v5e-1 (8 on a v2-8), one
        `CudaDevice` per GPU, or one `CpuDevice`. The training step is data-parallel over all of them. On a
        TPU or GPU runtime where JAX ends up with only the CPU (a JAX that cannot use the accelerator), the
        notebook stops here instead of training for hours on the CPU.
        """,
    ),
    (
        "devices",
        "code",
        """
        probe = "import json, jax; print(json.dumps({'backend': jax.default_backend(), 'devices': repr(jax.devices())}))"
        found = run_json(sys.executable, "-c", probe)
        BACKEND = found["backend"]
        print("backend:", BACKEND)
        print("jax.devices():", found["devices"])
        if RUNTIME != "cpu" and BACKEND == "cpu":
            raise RuntimeError(
                f"this is a {RUNTIME.upper()} runtime ({ACCELERATOR['detail']}) but JAX sees only the CPU, so the "
                f"JAX installed with the extras '{ACCELERATOR['extras']}' cannot drive it. Restart the runtime and "
                "run the notebook again from the top; if this stays, compare nvidia-smi's driver with JAX's "
                "installation guide (CUDA 12 wheels need driver 525 or newer, CUDA 13 wheels 580)."
            )
        """,
    ),
    (
        "config-md",
        "markdown",
        """
        ## 3. Config

        On a TPU or GPU, `configs/meditations.yaml`: `bert-base-uncased` continued on *Meditations*, 1000 steps
        of batch 32 at sequence length 128, MLM + NSP. On a CPU, `configs/meditations_scratch.yaml`: BERT-mini
        from scratch, 300 steps. `CONFIG` and `OVERRIDES` replace this choice; any field can be overridden, and
        an unknown key is an error that lists the valid ones. The resolved config is saved in the run
        directory.
        """,
    ),
    (
        "config",
        "code",
        """
        if not CONFIG:
            CONFIG = "configs/meditations.yaml" if BACKEND != "cpu" else "configs/meditations_scratch.yaml"
        ARGS = ([f"data.path={CORPUS}"] if CORPUS else []) + list(OVERRIDES)
        PRETRAIN_ARGS = " ".join(shlex.quote(a) for a in ["--config", CONFIG, "--run-dir", RUN_DIR, *ARGS])
        print(Path(CONFIG).read_text())
        print("bert-flax pretrain", PRETRAIN_ARGS)
        """,
    ),
    (
        "pretrain-md",
        "markdown",
        """
        ## 4. Pre-train

        The progress line shows the training loss (MLM + NSP) and throughput; the first step also compiles.
        Every `eval.every` steps the model is evaluated on the held-out paragraphs, and every
        `checkpoint.every` steps the state (parameters, optimizer, data position) is checkpointed: **running
        this cell again resumes** where the run stopped, with the batches an uninterrupted run would have
        seen. A different config on the same `RUN_DIR` is refused; choose another `RUN_DIR` for it.
        """,
    ),
    (
        "pretrain",
        "code",
        """
        !bert-flax pretrain {PRETRAIN_ARGS}
        check("bert-flax pretrain")
        """,
    ),
    (
        "eval-md",
        "markdown",
        """
        ## 5. Evaluation

        The eval events of `RUN_DIR/metrics.jsonl`, measured on held-out paragraphs: MLM accuracy (the
        masked token ranked first) and perplexity (exp of the MLM loss), and NSP accuracy (chance is about
        0.5). For scale, on the CPU config always predicting "," scores MLM accuracy 0.065; its 300 steps reach
        about 0.11, with NSP accuracy about 0.68 (BENCHMARKS.md, "Pre-training: learning runs").
        """,
    ),
    (
        "eval",
        "code",
        """
        from bert_flax.run.metrics import read_metrics

        evals = read_metrics(RUN_DIR, "eval")
        names = {"mlm_accuracy": "MLM accuracy", "perplexity": "perplexity", "nsp_accuracy": "NSP accuracy"}
        for event in evals:
            print(f"step {event['step']:>6}  " + "  ".join(f"{k} {event[k]:.4g}" for k in names if k in event))
        final = evals[-1]
        print(f"final (step {final['step']}):", ", ".join(f"{name} {final[k]:.3f}" for k, name in names.items() if k in final))
        """,
    ),
    (
        "report-md",
        "markdown",
        """
        ## 6. Loss curves

        `bert-flax report` prints a summary of the run (model, batch, optimizer, throughput, the last and best
        train and eval metrics), writes it to `RUN_DIR/report.md` and draws the curves into `RUN_DIR/plots/`:
        the losses (total, MLM, NSP; train and eval), the accuracies and the learning-rate schedule.
        """,
    ),
    (
        "report",
        "code",
        """
        from IPython.display import Image, display

        !bert-flax report {shlex.quote(RUN_DIR)}
        check("bert-flax report")
        for png in sorted(Path(RUN_DIR, "plots").glob("*.png"), key=lambda p: (p.stem != "loss", p.name)):
            print(png.name)
            display(Image(filename=str(png)))
        """,
    ),
    (
        "predict-md",
        "markdown",
        """
        ## 7. Predictions

        The top tokens for a `[MASK]` in a sentence of Book VII ("very little indeed is necessary for living a
        happy life"), with their probabilities; tokens starting with `##` continue a word. After a short run
        on a CPU expect frequent words rather than the right one. Then NSP on two pairs: the sentence that
        follows the opening of Book II, and a sentence of Book IV.
        """,
    ),
    (
        "fill-mask",
        "code",
        """
        MASKED = "Very little indeed is necessary for living a happy [MASK]."
        !bert-flax predict fill-mask --model {shlex.quote(RUN_DIR)} {shlex.quote(MASKED)}
        check("bert-flax predict fill-mask")
        """,
    ),
    (
        "next-sentence",
        "code",
        """
        import tempfile

        A = "Begin the morning by saying to thyself, I shall meet with the busy-body, the ungrateful, arrogant, deceitful, envious, unsocial."
        PAIRS = [
            (A, "All these things happen to them by reason of their ignorance of what is good and evil."),  # IsNext
            (A, "The universe is transformation: life is opinion."),  # NotNext: another paragraph
        ]
        pairs_file = Path(tempfile.mkdtemp(), "pairs.tsv")
        pairs_file.write_text("".join(f"{a}\\t{b}\\n" for a, b in PAIRS))
        for number, (_, b) in enumerate(PAIRS, 1):
            print(f"{number}. A, then: {b}")
        !bert-flax predict next-sentence --model {shlex.quote(RUN_DIR)} --file {shlex.quote(str(pairs_file))}
        check("bert-flax predict next-sentence")
        """,
    ),
    (
        "export-md",
        "markdown",
        """
        ## 8. Export to PyTorch

        `bert-flax export` writes a Hugging Face directory (safetensors, config, tokenizer, model card) that
        PyTorch `transformers` loads as `BertForPreTraining`. `--verify` loads it with PyTorch and compares
        the MLM and NSP logits with the Flax model on fixed sentence pairs (at most 1e-4 apart in float32).
        Then the same fill-mask, in PyTorch.
        """,
    ),
    (
        "export",
        "code",
        """
        !bert-flax export {shlex.quote(RUN_DIR)} --out {shlex.quote(EXPORT_DIR)} --verify --force
        check("bert-flax export")
        """,
    ),
    (
        "torch-fill-mask",
        "code",
        """
        import torch
        from transformers import BertForPreTraining, BertTokenizerFast

        tokenizer = BertTokenizerFast.from_pretrained(EXPORT_DIR)
        model = BertForPreTraining.from_pretrained(EXPORT_DIR).eval()
        inputs = tokenizer(MASKED, return_tensors="pt")
        with torch.no_grad():
            logits_LxV = model(**inputs).prediction_logits[0]
        position = int((inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
        probs_V = logits_LxV[position].softmax(-1)
        top = probs_V.topk(5)
        torch_tokens = tokenizer.convert_ids_to_tokens(top.indices.tolist())
        print(MASKED)
        print("  PyTorch [MASK]:", "  ".join(f"{t} {p:.3f}" for t, p in zip(torch_tokens, top.values.tolist())))

        flax_top = run_json("bert-flax", "predict", "fill-mask", "--model", RUN_DIR, "--json", MASKED)["masks"][0]
        gap = max(abs(c["probability"] - float(probs_V[c["id"]])) for c in flax_top)
        agree = "agree" if flax_top[0]["token"] == torch_tokens[0] else "DISAGREE"
        print(f"top token: Flax {flax_top[0]['token']!r}, PyTorch {torch_tokens[0]!r}: {agree}")
        print(f"largest probability difference over Flax's top 5: {gap:.1e}")
        """,
    ),
    (
        "next-steps",
        "markdown",
        """
        ## Next

        - Train longer: `OVERRIDES = ["train.steps=3000"]` with a new `RUN_DIR`, or rerun step 4 after an
          interruption to resume.
        - Fine-tune the pre-trained encoder on your own labels:
          `bert-flax finetune classify --config configs/finetune_classify.yaml model.init=runs/colab finetune.train_path=train.csv finetune.eval_path=eval.csv`.
        - Take the PyTorch export with you: it is a plain `save_pretrained` directory (`EXPORT_DIR`), loadable
          with `BertForPreTraining`, `BertForMaskedLM` or `BertModel`.
        - The README describes every command, config key and the data pipeline (NSP pairing, dynamic masking).
        """,
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook: the cells above, no outputs, a python3 kernel."""
    cells = []
    for cell_id, kind, source in CELLS:
        text = textwrap.dedent(source).strip("\n")
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(text, id=cell_id))
        else:
            metadata = {"tags": ["parameters"]} if cell_id == "parameters" else {}
            cells.append(nbformat.v4.new_code_cell(text, id=cell_id, metadata=metadata))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    nbformat.validate(nb)
    return nb


def render() -> str:
    """The notebook file's text, exactly as `nbformat.write` would write it."""
    text = nbformat.writes(build())
    return text if text.endswith("\n") else text + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the notebook differs from the cells here")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not NOTEBOOK.is_file() or NOTEBOOK.read_text(encoding="utf-8") != text:
            print(f"{NOTEBOOK} is out of date: run python scripts/make_colab_notebook.py", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.parent.mkdir(parents=True, exist_ok=True)
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
