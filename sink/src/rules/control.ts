/** Which scenario is active: chosen at start, switched over HTTP, kept across reloads of the rules file. */
import type { ScenarioDef, SinkConfig } from "./config.ts";
import { CompiledScenario } from "./engine.ts";
import { Random } from "./random.ts";

export class ScenarioControl {
  private config: SinkConfig;
  private custom = false;
  private readonly random: Random;
  active: CompiledScenario;

  constructor(
    config: SinkConfig,
    initial: string | undefined,
    private readonly seed: number,
    private readonly onFault: (rule: string) => void,
  ) {
    this.config = config;
    this.random = new Random(seed);
    const name = initial ?? config.defaultScenario;
    const def = config.scenarios[name];
    if (!def) throw new Error(`unknown scenario ${JSON.stringify(name)}; available: ${this.available().join(", ")}`);
    this.active = this.compile(def);
  }

  get catalogues(): Record<string, string[]> {
    return this.config.catalogues;
  }

  available(): string[] {
    return Object.keys(this.config.scenarios);
  }

  /** Every activation restarts the seeded generator, so the same scenario, seed and traffic give the same replies. */
  private compile(def: ScenarioDef): CompiledScenario {
    this.random.reseed(this.seed);
    return new CompiledScenario(def, this.config.catalogues, this.random, this.onFault);
  }

  /** Returns false when the config has no scenario of that name. */
  select(name: string): boolean {
    const def = this.config.scenarios[name];
    if (!def) return false;
    this.active = this.compile(def);
    this.custom = false;
    return true;
  }

  replace(def: ScenarioDef): void {
    this.active = this.compile(def);
    this.custom = true;
  }

  /** A new rules file: a custom scenario stays; a named one is recompiled from its new definition, or falls back. */
  reload(config: SinkConfig): void {
    this.config = config;
    if (this.custom) return;
    if (!this.select(this.active.def.name)) this.select(config.defaultScenario);
  }

  describe(): object {
    return {
      name: this.active.def.name,
      custom: this.custom,
      available: this.available(),
      chosen_clients: this.active.chosenClients(),
      rules: this.active.def,
    };
  }
}
