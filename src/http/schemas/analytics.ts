/** The analytics schemas live beside the query code (analytics/schemas.ts), which takes their types. */
export {
  anomaliesQuery,
  anomaliesResponse,
  compareBody,
  compareResponse,
  exportQuery,
  exportResponse,
  sensorParams,
  sensorsQuery,
  sensorsResponse,
  statsQuery,
  statsResponse,
  timeseriesQuery,
  timeseriesResponse,
} from '../../analytics/schemas.js';
