/**
 * Exit codes shared by every script, so a CI job or a shell loop can branch on the cause without parsing text.
 * Values are part of the user-facing contract (documented in each --help and in docs/tools.md): never renumber.
 */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  payload: 3,
  kumodUnreachable: 4,
  unauthorized: 5,
  unprocessable: 6,
  tooLarge: 7,
  unavailable: 8,
  recipientsRejected: 9,
  httpError: 10,
  sinkUnreachable: 11,
  verifyIncomplete: 12,
  kubectlMissing: 13,
  clusterUnreachable: 14,
  namespaceMissing: 15,
  checksFailed: 16,
  confirmationRequired: 17,
  unknownScenario: 18,
  commandFailed: 19,
  filesNotWritable: 20,
  lockBusy: 21,
  notProven: 22,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** One line per code, for --help texts. */
export const EXIT_DESCRIPTIONS: Record<ExitCode, string> = {
  0: "success",
  1: "unexpected internal error (a bug: please report it)",
  2: "invalid command-line option",
  3: "payload file missing, not valid JSON (line and column shown) or not accepted by kumod's schema",
  4: "kumod unreachable (connection refused/reset, no answer within --timeout, or gone for longer than --restart-budget): is `tilt up` running and the port-forward up?",
  5: "401 from kumod: credentials in .env do not match the Secret (npm run seed, then tilt up again)",
  6: "422 from kumod: a field or template it does not accept (its message, and the field, shown)",
  7: "413 from kumod: request body over 2 MiB (use a smaller --batch)",
  8: "503 from kumod after --retries or --restart-budget (shutting down, load shedding, disk full, spool starting)",
  9: "kumod answered 200 but rejected some recipients (fail_count > 0)",
  10: "other HTTP error from kumod (400, 404: not kumod's API, 415, 500...)",
  11: "sink HTTP API unreachable (SINK_HTTP_URL; is `tilt up` running?)",
  12: "verify: not every accepted recipient reached the sink before --verify-timeout",
  13: "kubectl not found on PATH",
  14: "Kubernetes cluster unreachable (kubectl cannot talk to the current context)",
  15: "namespace not found (run `tilt up` first)",
  16: "doctor: at least one check failed",
  17: "confirmation required: no TTY and no --yes",
  18: "unknown sink scenario (the message lists the available ones)",
  19: "an external command (kubectl, tilt) failed",
  20: "seed: cannot read or write .env or k8s/overlays/local/secrets/ (ownership or permissions)",
  21: "seed: another seed run holds the lock (k8s/overlays/local/secrets/.seed.lock)",
  22: "drill: the load ended before the fault, so it proved nothing (raise --count or lower --fault-at)",
  130: "interrupted (Ctrl-C); the summary shows what was sent",
};

export function exitCodeTable(codes: readonly ExitCode[]): string {
  return codes.map((c) => `  ${String(c).padStart(3)}  ${EXIT_DESCRIPTIONS[c]}`).join("\n");
}

/**
 * An error that carries the exit code a script should end with; runMain prints message and hint. `data` is what the
 * tool found before failing (inject's summary, status's readings): with --json it goes out with exit_code and error.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
    this.name = "CliError";
  }
}
