from seqpt_jax.cli import main

raise SystemExit(main())
