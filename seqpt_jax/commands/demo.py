"""`seqpt demo`: corpus -> vocabulary -> MLM encoder -> bert2BERT growth -> seq2seq warm start
-> seq2seq from scratch and its extracted encoder -> cross-lingual fine-tuning -> summary.

Every stage writes a DONE marker in its directory under --out; rerunning skips finished
stages and resumes a killed training stage from its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time

from seqpt_jax.errors import UserError


def main(argv: list[str]) -> int:
    from seqpt_jax.demo import DEFAULT_MINUTES, DEMO_LANGS
    parser = argparse.ArgumentParser(
        prog="seqpt demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="seqpt-demo", help="output directory (default: ./seqpt-demo); "
                        "rerun with the same --out to continue")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"time budget on 2 CPU cores; scales every step budget (default: {DEFAULT_MINUTES:g})")
    parser.add_argument("--corpus", help="corpus directory (default: the built corpus in the data dir, "
                        f"else a build of {','.join(DEMO_LANGS)} beside it)")
    parser.add_argument("--plan", action="store_true", help="print the plan (sizes, steps) and exit")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bars")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes:g}.")
    from seqpt_jax import demo
    plan = demo.Plan().scaled(args.minutes)
    if args.plan:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    start = time.time()
    result = demo.run(args.out, corpus=args.corpus, plan=plan,
                      progress=False if args.no_progress else None)
    print("\n" + result["text"])
    print(f"summary: {result['markdown']}  {result['json']}\nplot:    {result['plot']}")
    print(f"demo finished in {time.time() - start:.0f} s; stages run now: {', '.join(result['ran']) or 'none'}")
    return 0
