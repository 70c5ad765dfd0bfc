// Loggers for the apps, workers and benchmarks tests start: their lines go to the run's log file
// (TEST_LOG_FILE, named at the start of the run), never into jest's output, which stays the
// tests' own. A failing test's story is in that file.
import pino from 'pino';
import { createLogger, type Logger } from '../../src/log.ts';

let destination: pino.DestinationStream | undefined;

export function testLogger(name: string, level = process.env.LOG_LEVEL ?? 'warn'): Logger {
  // Appends from both jest workers: each line is one write to a file opened with O_APPEND.
  destination ??= pino.destination({ dest: process.env.TEST_LOG_FILE!, sync: true, append: true, mkdir: true });
  return createLogger(level, name, destination);
}
