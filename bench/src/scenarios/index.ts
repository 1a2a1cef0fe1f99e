import type { Scenario } from '../scenario';
import { bulkEnqueue } from './bulk-enqueue';
import { deadLetter } from './dead-letter';
import { endToEnd } from './end-to-end';
import { remoteWorker } from './remote-worker';
import { singleEnqueue } from './single-enqueue';

/** Every scenario, in the order they run and are printed. A new scenario is a file and a line here. */
export const scenarios: Scenario[] = [singleEnqueue, bulkEnqueue, endToEnd, remoteWorker, deadLetter];
