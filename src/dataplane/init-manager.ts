/**
 * Envoy's init manager: work a configuration must finish before its listeners serve, such as a JWKS fetched
 * before the first request asks for it. Targets are registered while the configuration compiles and started once
 * its clusters have hosts (a target may need to reach one); a configuration that is only validated starts none.
 */
export class InitManager {
  private readonly targets: (() => Promise<void>)[] = [];

  /** `target` resolves when its work is done; it must settle (time out, catch its errors) on its own. */
  add(target: () => Promise<void>): void {
    this.targets.push(target);
  }

  /** Starts every target; resolves when all are done. */
  async initialize(): Promise<void> {
    await Promise.all(this.targets.map((target) => target()));
  }
}
