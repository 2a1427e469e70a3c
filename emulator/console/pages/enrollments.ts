import type { Route } from '../routes.js';

export const enrollmentRoutes: Route[] = [];
