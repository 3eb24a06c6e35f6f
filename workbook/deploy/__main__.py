"""``python -m workbook.deploy``: runs :func:`workbook.deploy.cli.main`."""

from workbook.deploy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
