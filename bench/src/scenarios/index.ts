import type { AnyScenario } from '../scenario';
import { bulkEnqueue } from './bulk-enqueue';
import { deadLetter } from './dead-letter';
import { endToEnd } from './end-to-end';
import { endToEndTraced } from './end-to-end-traced';
import { streamEnqueue, transportEcho, unaryEnqueue } from './enqueue-paths';
import { latency, latencyRemote } from './latency';
import { remoteWorker } from './remote-worker';
import { singleEnqueue } from './single-enqueue';

/** Every scenario, in the order they run and are printed. A new scenario is a file and a line here. */
export const scenarios: AnyScenario[] = [singleEnqueue, unaryEnqueue, streamEnqueue, transportEcho, bulkEnqueue, endToEnd, endToEndTraced, remoteWorker, deadLetter, latency, latencyRemote];
