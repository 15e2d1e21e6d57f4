"""The one-shot commands: ``status``, ``init``, ``custody verify``, ``custody import``.

They are run by a person (or a script) against a live cluster, so every module here follows the
same three rules:

- results go to stdout, logs to stderr (:mod:`plumbing.telemetry`), and an expected failure is
  one line on stderr with a non-zero exit code, never a traceback (:mod:`.runner`);
- no share or root token is ever printed, logged or put in an error, with two explicit
  exceptions a person asks for by flag (``--print-root-token``) or that prevent a loss
  (``init``'s last resort, :mod:`.secret_io`);
- each step that cannot be undone (``sys/init``) is preceded by every check that can fail
  without doing it, so a refusal leaves the Vault as it was.

Exit codes, for all of them: 0 success; 1 the command ran and found or hit a problem (Vault
sealed or unreachable, a custodian down, custody unsafe, a distribution that used the fallback
file); 2 the command could not start (bad option, unusable config or input, a refusal).
"""
