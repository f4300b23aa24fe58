// mongo1's health check (docker-compose.yml): initiate the replica set, create the users, report health.
// Runs inside the container: until the first user exists, MongoDB's localhost exception allows rs.initiate()
// and that user's creation. Exit code 0 = a primary is elected and both users exist.
const env = process.env;
const admin = db.getSiblingDB("admin");

function state() {
  try {
    return rs.status();
  } catch (e) {
    return e;
  }
}

let status = state();
if (status.codeName === "Unauthorized") {
  admin.auth(env.MONGO_ROOT_USER, env.MONGO_ROOT_PASSWORD);
  status = state();
}
if (status.codeName === "NotYetInitialized") {
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo1:27017", priority: 2 },
      { _id: 1, host: "mongo2:27017", priority: 1 },
      { _id: 2, host: "mongo3:27017", priority: 1 },
    ],
  });
  quit(1); // healthy on a later check, once a primary is elected
}
if (status.ok !== 1 || !db.hello().isWritablePrimary) {
  quit(1);
}
try {
  admin.createUser({ user: env.MONGO_ROOT_USER, pwd: env.MONGO_ROOT_PASSWORD, roles: ["root"] });
} catch (e) {
  // exists already (or we are not allowed because it exists): authenticate as it below
}
admin.auth(env.MONGO_ROOT_USER, env.MONGO_ROOT_PASSWORD);
const app = db.getSiblingDB("infirmary");
if (app.getUser(env.MONGO_APP_USER) === null) {
  app.createUser({ user: env.MONGO_APP_USER, pwd: env.MONGO_APP_PASSWORD,
                   roles: [{ role: "readWrite", db: "infirmary" }] });
}
quit(0);
