//! The users actor: one short handler per request type, each forwarding to [`Users`].

use actix::prelude::*;
use courier_actors::Request;

use crate::domain::{User, UsersError};
use crate::endpoints::{
    Authenticate, CreateUser, DeleteUser, Deleted, GetUser, ListUsers, UpdateUser, UserPage,
};
use crate::users::Users;

/// Serves every users endpoint. Handlers return futures, so requests run concurrently; the
/// actor holds no state of its own beyond its dependencies.
pub struct UsersActor(pub Users);

impl Actor for UsersActor {
    type Context = Context<Self>;
}

impl Handler<Request<CreateUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<CreateUser>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().create(req.body, req.meta))
    }
}

impl Handler<Request<GetUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<GetUser>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().get(req.body))
    }
}

impl Handler<Request<ListUsers>> for UsersActor {
    type Result = ResponseFuture<Result<UserPage, UsersError>>;
    fn handle(&mut self, req: Request<ListUsers>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().list(req.body))
    }
}

impl Handler<Request<UpdateUser>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<UpdateUser>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().update(req.body, req.meta))
    }
}

impl Handler<Request<DeleteUser>> for UsersActor {
    type Result = ResponseFuture<Result<Deleted, UsersError>>;
    fn handle(&mut self, req: Request<DeleteUser>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().delete(req.body, req.meta))
    }
}

impl Handler<Request<Authenticate>> for UsersActor {
    type Result = ResponseFuture<Result<User, UsersError>>;
    fn handle(&mut self, req: Request<Authenticate>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.0.clone().authenticate(req.body))
    }
}
