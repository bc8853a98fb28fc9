export async function evalsPage(main) {
  main.replaceChildren("Eval runs: not yet");
  return null;
}
