export { buildDashboardBundle, type DashboardBundle } from "./server/bundle.js";
export {
  DASHBOARD_DEFAULT_PORT,
  type DashboardOptions,
  type RunningDashboard,
  startDashboard,
} from "./server/dashboard-server.js";
