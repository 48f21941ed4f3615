/** Pure: whether reset may go on, or why not. */
export function confirmationDecision(yes: boolean, isTTY: boolean): "proceed" | "ask" | "refuse" {
  if (yes) return "proceed";
  return isTTY ? "ask" : "refuse";
}
