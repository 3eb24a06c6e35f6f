"""``python -m workbook.synth``: the command line of :mod:`workbook.synth.cli`."""

from workbook.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
