// JSON logs (pino). Messages are constant; variable data goes in fields.
import { type Logger, pino } from "pino";

export type { Logger };

export function newLogger(level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    level,
    base: { component: "internal-service-controller" },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that drops everything (tests that don't assert on logs). */
export const silentLogger: Logger = pino({ level: "silent" });
