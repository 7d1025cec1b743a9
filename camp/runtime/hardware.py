"""What this machine is: its GPUs and the course profile they give. The only module that probes for GPUs.

GPUs are read from `nvidia-smi` (a 50 ms subprocess) rather than torch, so `camp doctor` and the CLI stay
fast and work without torch. Set CAMP_FAKE_GPUS to simulate an inventory (tests, or a TA planning a
machine): "80,80" means two GPUs of 80 GiB; "" or "none" means no GPU; JSON gives full control:
'[{"name": "A100-SXM4-80GB", "total_mib": 81920, "free_mib": 40000}, 24]' (a bare number is GiB, all free).

Profiles, chosen by the SMALLEST GPU's total memory (work is split evenly over GPUs, so the smallest one
limits what fits); N > 1 GPUs add "-xN":

    smallest GPU total     profile     typical card / InternStudio slice     default model
    no GPU, or < 7 GiB     cpu-tiny    CPU, laptop GPU                       tiny (embedded, built locally)
    7 – < 22 GiB           gpu-8g      10% A100 (8 GB), T4/4080 (16 GB)      internlm2_5-1_8b-chat
    22 – < 36 GiB          gpu-24g     30% A100 (24 GB), 3090/4090, V100-32  internlm2_5-7b-chat
    36 – < 72 GiB          gpu-40g     50% A100 (40 GB), A100-40G, A6000-48  internlm2_5-7b-chat
    >= 72 GiB              gpu-80g     A100/H100-80G, H200                   internlm2_5-7b-chat

The cut points sit ~10% below the nominal sizes because nvidia-smi reports a little less than the label
(a 24 GB 4090 shows 24564 MiB, an 80 GB H100 81559 MiB). A 16 GB card is gpu-8g: it cannot chat with the
7B model in bf16 (~19 GB), which is what gpu-24g promises (plus 7B QLoRA, ~14 GB; see camp.plan).

Why gpu-80g defaults to 7B and not internlm2_5-20b-chat although 20B chat fits (~48 GB; see
assets/models.json): lessons run two processes on one GPU at once (an LMDeploy server that reserves most
free memory for its KV cache, plus the client, agent or evaluation), the tutorials are written for 7B,
and 20B makes every LoRA/eval step ~3x slower. 20B is one `model="internlm2_5-20b-chat"` away.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from camp.runtime.errors import CampError

GIB = 1024  # MiB per GiB

# (profile base name, smallest total GiB that qualifies), largest first
TIERS: tuple[tuple[str, float], ...] = (("gpu-80g", 72), ("gpu-40g", 36), ("gpu-24g", 22), ("gpu-8g", 7))
BASE_PROFILES = ("cpu-tiny", "gpu-8g", "gpu-24g", "gpu-40g", "gpu-80g")
DEFAULT_MODEL = {
    "cpu-tiny": "tiny",
    "gpu-8g": "internlm2_5-1_8b-chat",
    "gpu-24g": "internlm2_5-7b-chat",
    "gpu-40g": "internlm2_5-7b-chat",
    "gpu-80g": "internlm2_5-7b-chat",
}
# per-GPU memory a profile promises, in GB (what catalogue memory needs are compared with)
PROFILE_GB = {"cpu-tiny": 0, "gpu-8g": 8, "gpu-24g": 24, "gpu-40g": 40, "gpu-80g": 80}

_NAME_RE = re.compile(r"^(cpu-tiny|gpu-(?:8|24|40|80)g)(?:-x([2-9]|[1-9]\d+))?$")
# Pre-Ampere cards have no fast bf16: use fp16 there.
_NO_BF16 = re.compile(r"\b(V100|T4|P100|P40|P4|K80|M60|Titan V|GTX|RTX 20\d\d|Quadro RTX)\b", re.I)


@dataclass
class GPU:
    index: int
    name: str
    total_mib: int
    free_mib: int

    @property
    def total_gib(self) -> float:
        return self.total_mib / GIB

    @property
    def free_gib(self) -> float:
        return self.free_mib / GIB


@dataclass
class Profile:
    name: str
    gpus: list[GPU] = field(default_factory=list)
    device: str = "cpu"  # "cpu" | "cuda"
    dtype: str = "float32"
    default_model: str = "tiny"
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        """The profile without its GPU count: gpu-80g-x2 → gpu-80g."""
        return _NAME_RE.match(self.name).group(1)

    @property
    def gpu_count(self) -> int:
        m = _NAME_RE.match(self.name)
        if self.base == "cpu-tiny":
            return 0
        return int(m.group(2) or 1)

    @property
    def memory_gb(self) -> int:
        """Memory per GPU the profile promises (0 on cpu-tiny)."""
        return PROFILE_GB[self.base]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(gpu_count=self.gpu_count, memory_gb=self.memory_gb)
        return d


def _parse_fake(spec: str) -> list[GPU]:
    spec = spec.strip()
    if spec.lower() in ("", "none", "0", "[]"):
        return []
    try:
        items = json.loads(spec) if spec.startswith("[") else [float(x) for x in spec.split(",") if x.strip()]
    except ValueError as exc:
        raise CampError(
            f"CAMP_FAKE_GPUS={spec!r} is not understood — use GiB per GPU like '80,80', "
            "'none', or JSON like '[{\"name\": \"A100\", \"total_mib\": 81920, \"free_mib\": 80000}]'"
        ) from exc
    gpus = []
    for i, item in enumerate(items):
        if isinstance(item, (int, float)):
            total = int(float(item) * GIB)
            gpus.append(GPU(i, f"Simulated GPU {item:g} GiB", total, total))
        elif isinstance(item, dict):
            total = int(item.get("total_mib") or float(item.get("total_gib", item.get("total_gb", 0))) * GIB)
            free = item.get("free_mib")
            if free is None:
                free = float(item.get("free_gib", item.get("free_gb", total / GIB))) * GIB
            gpus.append(GPU(int(item.get("index", i)), str(item.get("name", f"Simulated GPU {i}")),
                            total, int(free)))
        else:
            raise CampError(f"CAMP_FAKE_GPUS entry {item!r} is neither a number (GiB) nor an object")
    return gpus


def _nvidia_smi() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        try:
            gpus.append(GPU(int(parts[0]), ",".join(parts[1:-2]), int(float(parts[-2])), int(float(parts[-1]))))
        except ValueError:
            continue  # "[N/A]" on some MIG/vGPU set-ups
    return _visible(gpus)


def _visible(gpus: list[GPU]) -> list[GPU]:
    """nvidia-smi lists every GPU; CUDA_VISIBLE_DEVICES restricts what torch (and so the course) gets."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is None:
        return gpus
    wanted = [v.strip() for v in vis.split(",") if v.strip()]
    if not all(v.isdigit() for v in wanted):
        return gpus  # UUIDs / MIG names: trust nvidia-smi's list
    by_index = {g.index: g for g in gpus}
    return [by_index[int(v)] for v in wanted if int(v) in by_index]


_cache: dict[str, list[GPU]] = {}


def detect_gpus(refresh: bool = False) -> list[GPU]:
    """This machine's GPUs (CAMP_FAKE_GPUS simulates them); [] when there is none or nvidia-smi fails."""
    fake = os.environ.get("CAMP_FAKE_GPUS")
    if fake is not None:
        return _parse_fake(fake)
    key = os.environ.get("CUDA_VISIBLE_DEVICES", "*")
    if refresh or key not in _cache:
        _cache[key] = _nvidia_smi()
    return list(_cache[key])


def choose_profile(gpus: list[GPU]) -> str:
    """The profile name for a GPU inventory (see the module docstring for the table)."""
    if not gpus:
        return "cpu-tiny"
    smallest = min(g.total_mib for g in gpus) / GIB
    for name, min_gib in TIERS:
        if smallest >= min_gib:
            return name if len(gpus) == 1 else f"{name}-x{len(gpus)}"
    return "cpu-tiny"


def _valid_names() -> str:
    return ", ".join(BASE_PROFILES) + " (GPU profiles take -xN for N GPUs, e.g. gpu-80g-x2)"


def profile(name: str | Profile | None = "auto", refresh: bool = False) -> Profile:
    """The course profile: "auto" (or None) detects it (CAMP_PROFILE overrides); a valid name is taken as given; a
    Profile is returned as it is — the one place a `profile=` argument becomes a Profile."""
    if isinstance(name, Profile):
        return name
    gpus = detect_gpus(refresh=refresh)
    detected = choose_profile(gpus)
    notes: list[str] = []
    requested = (name or "auto").strip().lower()
    if requested == "auto":
        env = os.environ.get("CAMP_PROFILE", "").strip().lower()
        if env and env != "auto":
            requested = env
            notes.append(f"profile {env} set by CAMP_PROFILE")
    if requested == "auto":
        chosen = detected
    else:
        if not _NAME_RE.match(requested):
            raise CampError(f"unknown profile {name!r} — valid profiles: {_valid_names()}, or auto")
        chosen = requested
        if chosen != detected:
            notes.append(f"profile {chosen} was asked for; this machine looks like {detected}")

    base = _NAME_RE.match(chosen).group(1)
    device = "cpu" if base == "cpu-tiny" else "cuda"
    dtype = "float32"
    if device == "cuda":
        old = [g for g in gpus if _NO_BF16.search(g.name)]
        dtype = "float16" if old else "bfloat16"
        if old:
            notes.append(f"{old[0].name} has no fast bfloat16: models run in float16")

    if not gpus:
        if shutil.which("nvidia-smi") and os.environ.get("CAMP_FAKE_GPUS") is None:
            notes.append("nvidia-smi is installed but lists no GPU (driver problem or no GPU attached)")
    else:
        small = [g for g in gpus if g.total_gib < TIERS[-1][1]]
        if small and base == "cpu-tiny":
            notes.append(f"GPU {small[0].index} ({small[0].total_gib:.1f} GiB) is too small for the course "
                         "models: using the CPU profile")
        if len({round(g.total_gib) for g in gpus}) > 1:
            notes.append("GPUs of different sizes: the smallest decides the profile; set CUDA_VISIBLE_DEVICES "
                         "to use only the big ones")
        for g in gpus:
            if g.total_mib and g.free_mib < 0.5 * g.total_mib:
                notes.append(f"GPU {g.index} has only {g.free_gib:.1f} of {g.total_gib:.1f} GiB free: another "
                             "process is using it (see nvidia-smi)")
    return Profile(chosen, gpus, device, dtype, DEFAULT_MODEL[base], notes)
