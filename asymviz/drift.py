"""How far training moved A and B from their initial values (a stored run keeps the init).

The paper's observation: trained A stays close to its random init, B does not. For each module and factor:
the relative change ‖X − X0‖_F / ‖X0‖_F and the subspace similarity of X with X0 (asymviz.similarity),
with its random baseline, plus whether X is bit-identical to X0 (a frozen factor must be).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from asymviz.errors import AdapterError
from asymviz.linalg import basis_similarity, parallel_map
from asymviz.similarity import module_basis, random_baseline

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.adapters import LoraAdapter

DRIFT_COLUMNS = [
    "module", "layer", "kind", "which", "norm_init", "norm_final", "abs_change", "rel_change", "unchanged",
    "similarity_to_init", "random_baseline",
]  # fmt: skip


def drift_from_init(
    adapter: LoraAdapter,
    init: LoraAdapter,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Change of A and B from their initial values, per module.

    Parameters
    ----------
    adapter : the trained adapter
    init : the same adapter at step 0 (e.g. a run's ``init/`` folder); modules matched by name, shapes must agree

    Returns
    -------
    DataFrame, one row per (module, which), which in {"A", "B"}, columns
        module, layer, kind, which
        norm_init, norm_final : ‖X0‖_F and ‖X‖_F
        abs_change : ‖X − X0‖_F
        rel_change : abs_change / norm_init (NaN when X0 = 0, e.g. B in `ab` mode; see abs_change)
        unchanged : X is bit-identical to X0 (a frozen factor)
        similarity_to_init : subspace similarity of X and X0 (row space for A, column space for B;
            NaN when either is zero)
        random_baseline : the same for random subspaces of those dimensions
    """
    import numpy as np
    import pandas as pd

    missing = [n for n in adapter.names if n not in set(init.names)]
    if missing:
        raise AdapterError(
            f"{init.source}: the init lacks {len(missing)} module(s) of the adapter, e.g. {missing[0]!r}"
        )

    def per_module(name: str) -> list[dict]:
        m, m0 = adapter.module(name), init.module(name)
        if (m.A.shape, m.B.shape) != (m0.A.shape, m0.B.shape):
            raise AdapterError(
                f"module {name!r}: the init's shapes A {list(m0.A.shape)}, B {list(m0.B.shape)} differ from the "
                f"adapter's A {list(m.A.shape)}, B {list(m.B.shape)}"
            )
        if not (m.finite and m0.finite):
            return []
        rows = []
        for which, X, X0 in (("A", m.A, m0.A), ("B", m.B, m0.B)):
            n0, n1 = float(np.linalg.norm(X0)), float(np.linalg.norm(X))
            change = float(np.linalg.norm(X - X0))
            U, U0 = module_basis(m, which), module_basis(m0, which)
            rows.append(
                {"module": name, "layer": m.layer, "kind": m.kind, "which": which, "norm_init": n0,
                 "norm_final": n1, "abs_change": change, "rel_change": change / n0 if n0 > 0 else math.nan,
                 "unchanged": bool(np.array_equal(X, X0)), "similarity_to_init": basis_similarity(U, U0),
                 "random_baseline": random_baseline(U.k, U0.k, U.d)}
            )  # fmt: skip
        return rows

    results = parallel_map(per_module, adapter.names, progress=progress, workers=workers)
    frame = pd.DataFrame([r for rows in results for r in rows], columns=DRIFT_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame
