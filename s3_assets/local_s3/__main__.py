"""`python -m s3_assets.local_s3`: the same as the `s3-assets-local` console script."""

from s3_assets.local_s3.cli import main

raise SystemExit(main())
