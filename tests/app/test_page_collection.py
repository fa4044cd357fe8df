"""The Many adapters page: asks for uploads, then draws the collection of the uploaded adapters."""

from app_helpers import app_test, no_errors, write_bert_like_adapter


def test_the_page_asks_for_two_adapters(tmp_path):
    at = app_test("collection", store=tmp_path)
    at.run()
    no_errors(at)
    assert any("at least two adapters" in i.value for i in at.info)


def test_the_collection_of_uploaded_files_is_what_the_library_gives(tmp_path):
    """The page's call (cached.collection over saved uploads) on three adapters, two of them one adapter twice."""
    from app import cached

    a = write_bert_like_adapter(tmp_path / "a", seed=0) / "adapter_model.safetensors"
    b = write_bert_like_adapter(tmp_path / "b", seed=1) / "adapter_model.safetensors"
    paths = (str(a.parent), str(a.parent), str(b.parent))
    pairs, mean, shared, clusters = cached.collection(paths, ("1", "2", "3"), ("x", "x #2", "y"))
    same = pairs[(pairs["adapter_1"] == "x") & (pairs["adapter_2"] == "x #2")]
    assert (abs(same["similarity"] - 1) < 1e-9).all()
    assert set(clusters["adapter"]) == {"x", "x #2", "y"}
