"""The embedded S3 (SeaweedFS `weed mini`) for local use: started, reused and stopped by the
project. Imported only when the target is `local` (it needs POSIX file locks)."""
