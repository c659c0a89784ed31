"""The PyTorch adapter of the framework-neutral saliency explorer passes the model's saliency."""
import numpy as np

from course_lib.torch_models import saliency


def test_torch_explorer_uses_paper_saliency_of_the_model(monkeypatch):
    calls = []

    def fake_paper_saliency(model, texts, paper, user=None, n_top=10, device="auto"):
        calls.append((model, paper, user, n_top, device))
        return np.arange(1.0, texts.lengths[paper] + 1), np.array([4, 2])

    monkeypatch.setattr(saliency, "paper_saliency", fake_paper_saliency)
    texts = type("T", (), {"ids": np.array([[3, 4], [5, 0]]), "lengths": np.array([2, 1])})()
    vocab = type("V", (), {"decode": staticmethod(lambda ids: [f"w{i}" for i in ids])})()
    box = saliency.saliency_explorer("model", texts, vocab, ["first paper", "second paper"], papers=[1], n_top=3,
                                     device="cpu")
    assert calls == [("model", 1, None, 3, "cpu")]
    assert "w5" in box.children[-1].value and [v for _, v in box.children[2].options] == [-1, 4, 2]
