"""Many adapters at once: upload N adapters of one base; who shares A (an init), who shares B (a task)."""

from pathlib import Path

import streamlit as st

from app import cached, state, tables, uploads
from app.components import caption, download_frame, figure, guard, max_upload_mb, upload_allowed
from asymviz import figures as F

st.title("Many adapters at once")
st.markdown(
    "Upload two or more adapters of the same base model (each a .zip of a PEFT folder, or one .safetensors "
    "file with its scaling unknown) to see the paper's Figure 1 on your own adapters: the subspace similarity "
    "of their A's and of their B's, how much k shared directions explain against random subspaces, and groups. "
    "The shipped runs have the same view under **Compare runs → Similarity across seeds & tasks**."
)
limit = max_upload_mb()
ups = st.file_uploader(
    "Adapters (.zip or .safetensors), one file each", type=["zip", "safetensors"], accept_multiple_files=True,
    key="coll_files", help=f"At most {limit:,} MB each.",
)  # fmt: skip
if not ups or len(ups) < 2:
    st.info("Upload at least two adapters.", icon=":material/upload_file:")
    st.stop()
too_big = [u.name for u in ups if u.size > limit * 1024**2]
if too_big:
    st.error(f"Over the {limit:,} MB limit: {', '.join(too_big)}. Upload smaller files.")
    st.stop()
if not upload_allowed(ups):
    st.stop()
paths, names = [], []
for i, up in enumerate(ups):  # each adapter in a folder of its own: two uploads may share a file name
    folder = uploads.save_uploads([up], f"coll{i}", state.upload_folder())
    paths.append(str(folder / Path(up.name).name))
    names.append(Path(up.name).stem if [Path(u.name).stem for u in ups].count(Path(up.name).stem) == 1
                 else f"{Path(up.name).stem} #{i + 1}")  # fmt: skip
with guard("The adapters must come from the same base model (same module names and shapes)."):
    with st.spinner("Comparing subspaces…", show_time=True):
        pairs, _, shared, clusters = cached.collection(tuple(paths), uploads.signatures(paths), tuple(names))
    left, right = st.columns(2)
    for col, which in ((left, "A"), (right, "B")):
        with col:
            figure(
                F.similarity_heatmaps(pairs, which, order=names, title=f"{which} across your adapters"),
                f"collection_similarity_{which}",
                f"coll_sim_{which}",
                f"Subspace similarity of the {which}'s (mean over modules; 1 = same subspace) next to what random "
                "subspaces of the same sizes give.",
            )
    download_frame(pairs, "collection_similarity", "coll_sim_csv", "similarity table (CSV)")
    left, right = st.columns([3, 2])
    with left:
        figure(
            F.shared_directions_figure(
                tables.shared_by_k(shared[shared["which"].isin(["A", "B"])]), len(names)
            ),
            "collection_shared_directions",
            "coll_shared",
            "The share of the adapters' subspaces that k common directions hold: 1 at k = r when all share one "
            "subspace; the dashed lines are N random subspaces. A far above its line usually means a shared init "
            "(the same seed), B far above a shared task.",
        )
        download_frame(shared, "collection_shared_directions", "coll_shared_csv", "shared directions (CSV)")
    with right:
        st.markdown("**Groups** (average-linkage clusters of the mean similarity)")
        st.dataframe(tables.clusters_table(clusters), hide_index=True)
        caption(
            "Zhu et al.: A stays near its init, so A groups by seed; B carries the task, so B groups by task."
        )
