"""What the `ItemItemModel` base (nbs/04_itemknn.ipynb) gives every model that scores `X W` with a sparse `W`:
RP3beta and SLIM, each fitted on the built-in sample. Checkpoints round-trip and are refused, naming the part,
when `W` is damaged; `ModelService` serves the saved model. (ItemKNN's checkpoints are in tests/test_checkpoints.py.)
"""
import pandas as pd
import pytest
import torch

from movie_genie.data import split
from movie_genie.models import CheckpointError, Recommender, get_model, get_model_class
from movie_genie.serving import ModelService


@pytest.fixture(scope="module", params=["rp3beta", "slim"])
def fitted(request, sample):
    s = split(sample.ratings, "random", seed=0)
    return sample, s, get_model(request.param).fit(s.train, s.valid)


def test_save_load_round_trip(fitted, tmp_path):
    sample, s, m = fitted
    path = m.save_pretrained(tmp_path / m.name, metrics={"ndcg@10": 0.1}, movies=sample.movies, heldout=s.test)
    back = Recommender.from_pretrained(path)
    assert type(back) is type(m) and back.name == m.name and back.get_params() == m.get_params()
    assert back.W.shape == m.W.shape and (back.W != m.W).nnz == 0
    users = s.test.user_id.unique()[:100]
    pd.testing.assert_frame_equal(back.recommend(users, k=10), m.recommend(users, k=10))
    hist = s.train.movie_id[s.train.user_id == users[0]].tolist()
    pd.testing.assert_frame_equal(back.recommend_from_history(hist, k=10), m.recommend_from_history(hist, k=10))
    pd.testing.assert_frame_equal(back.similar_items(hist[:3], k=5), m.similar_items(hist[:3], k=5))
    assert get_model_class(m.name).from_pretrained(path).W.nnz == m.W.nnz
    with pytest.raises(CheckpointError, match="not 'itemknn'"):
        get_model_class("itemknn").from_pretrained(path)


@pytest.mark.parametrize("edit, frag", [
    (lambda s: s.update({"model.W.indptr": s["model.W.indptr"][:-3]}), "W.indptr"),
    (lambda s: s["model.W.indices"].__setitem__(0, 10**9), "W.indices"),
    (lambda s: s["model.W.indices"].__setitem__(0, -1), "W.indices"),
    (lambda s: s.update({"model.W.data": s["model.W.data"][:-1]}), "W.data"),
    (lambda s: s["model.W.data"].__setitem__(0, float("nan")), "non-finite"),
    (lambda s: s.pop("model.W.indices"), None),                 # the message names the model
])
def test_corrupt_checkpoint_refused(fitted, tmp_path, edit, frag):
    "A damaged W is a CheckpointError naming what is wrong, caught before SciPy reads it."
    _, _, m = fitted
    path = m.save_pretrained(tmp_path / m.name)
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=frag or m.name):
        Recommender.from_pretrained(path)


def test_served(fitted, tmp_path):
    "`ModelService` loads the saved model with `from_pretrained` and answers users, sessions and similar movies."
    sample, s, m = fitted
    name = m.name
    m.save_pretrained(tmp_path / "models" / name, metrics={"ndcg@10": 0.1}, movies=sample.movies)
    svc = ModelService(tmp_path / "models")
    assert list(svc.models) == [name] and not svc.unavailable
    user = int(m.user_map.ids[0])
    out = svc.recommend(name, user, k=5)
    assert not out["fallback"] and [r["movie_id"] for r in out["recommendations"]] == m.recommend([user], k=5).movie_id.tolist()
    batch = svc.recommend_batch(name, m.user_map.ids[:20].tolist(), k=5)
    assert len(batch["results"]) == 20
    hist = s.train.movie_id[s.train.user_id == user].tolist()
    sess = svc.recommend_session(name, hist + [10**9], k=5)
    want = m.recommend_from_history(hist, k=5)
    assert sess["unknown_movie_ids"] == [10**9] and not sess["fallback"]
    assert [r["movie_id"] for r in sess["recommendations"]] == want.movie_id.tolist() == m.recommend([user], k=5).movie_id.tolist()
    assert [r["because_movie_id"] for r in sess["recommendations"]] == [None if pd.isna(b) else int(b) for b in want.because_movie_id]
    assert all(r["because_movie_id"] in hist for r in sess["recommendations"] if r["because_movie_id"] is not None)
    sim = svc.similar_movies(name, hist[0], k=5)
    assert [r["movie_id"] for r in sim["similar"]] == m.similar_items([hist[0]], k=5).similar_movie_id.tolist()[:len(sim["similar"])]
