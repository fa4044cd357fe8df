"""`python -m asymviz.training train|sweep|runs|demo ...`: the asymviz CLI (the app starts runs this way).

python -m asymviz.training train --model minilm --task fine_foods --mode b_only --out runs/x
accelerate launch --num_processes 2 -m asymviz.training train ... --out runs/x   # data parallel
"""

from asymviz.cli.main import main

raise SystemExit(main())
