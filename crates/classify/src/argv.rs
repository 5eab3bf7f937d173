//! Labels for a command line (argv), for `exec` rules: `rm -rf`, `git push
//! --force`, `dropdb`, `mkfs`, `dd of=`.
